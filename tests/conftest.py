"""Shared fixtures: databases (SQLite and a real PostgreSQL cluster), the Core, the CLI.

Every test that takes ``db_url`` (or anything built on it) runs twice: on SQLite and on
PostgreSQL. The PostgreSQL cluster is started once per session by the tests themselves;
if it cannot start the PostgreSQL tests fail (they are never silently skipped). Set
``MULTIFLEXI_TEST_BACKENDS=sqlite`` to run only SQLite while developing.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from multiflexi.settings import load_settings
from multiflexid.core import Core
from multiflexid.store.db import Database
from tests.support.pgcluster import PgCluster

# The end-of-run sections (timings, figures; tests/support/summary.py) and the tests that
# share something of the whole machine, kept on one xdist worker (tests/support/groups.py).
pytest_plugins = ["tests.support.summary", "tests.support.groups"]

BACKENDS = [b for b in os.environ.get("MULTIFLEXI_TEST_BACKENDS", "sqlite,postgresql").split(",")
            if b]
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with PgCluster(fsync=False) as cluster:
        # A migrated template makes each test's database a cheap copy.
        cluster.psql("CREATE DATABASE mf_template")
        template = Database(cluster.url("mf_template"))
        template.upgrade()
        template.dispose()
        yield cluster


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of the test's backend."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'multiflexi.db'}"
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url
        return
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    name = f"t{os.getpid()}_{next(_counter)}"
    cluster.psql(f"CREATE DATABASE {name} TEMPLATE mf_template")
    yield cluster.url(name)
    cluster.psql(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    )
    cluster.psql(f"DROP DATABASE IF EXISTS {name}")


@dataclass
class Env:
    """The environment variables a test installation is configured by."""

    data_dir: Path
    db_url: str
    socket: Path

    def vars(self) -> dict[str, str]:
        return {
            "MULTIFLEXI_DATA_DIR": str(self.data_dir),
            "MULTIFLEXI_DATABASE_URL": self.db_url,
            "MULTIFLEXI_SOCKET": str(self.socket),
            "MULTIFLEXI_CONFIG": os.devnull,
            "MULTIFLEXI_NODE": "test-node",
        }


@pytest.fixture
def mf_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """A configured installation (data dir, database, socket path) in this process's env."""
    env = Env(tmp_path / "data", db_url, tmp_path / "mf.sock")
    env.data_dir.mkdir(exist_ok=True)
    for key, value in env.vars().items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def core(mf_env: Env) -> Iterator[Core]:
    c = Core(load_settings())
    yield c
    c.close()


@pytest.fixture
def examples_dir() -> Path:
    from multiflexi import examples

    return examples.app_files()[0].parent


@pytest.fixture
def mfcli(mf_env: Env, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``mfcli("company", "list", "--format", "json")`` -> Result(code, out, err)."""
    from tests.support.cli import run_cli

    return lambda *args: run_cli(capsys, *args)
