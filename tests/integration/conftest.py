"""Helpers of the integration tests: table dumps, a second fresh database, test data."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from multiflexid.store.db import Database
from multiflexid.store.orm import Base

DATA = Path(__file__).resolve().parent.parent / "data"
_fresh = itertools.count()


def dump_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the model, ordered by primary key."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                table.name: [
                    tuple(row)
                    for row in conn.execute(
                        select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def row_counts(url: str) -> dict[str, int]:
    return {name: len(rows) for name, rows in dump_tables(url).items()}


@pytest.fixture
def data_dir() -> Path:
    """tests/data: hand-written app files (legacy format, broken ones)."""
    return DATA


@pytest.fixture
def fresh_db_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Make another database of the test's backend: ``url = fresh_db_url()``.

    Migrated unless ``migrated=False`` (then it has no table at all; a SQLite file does
    not even exist yet).
    """
    made: list[str] = []

    def make(migrated: bool = True) -> str:
        n = next(_fresh)
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / f'fresh{n}' / 'multiflexi.db'}"
            if migrated:
                db = Database(url)
                db.upgrade()
                db.dispose()
            return url
        cluster = request.getfixturevalue("pg_cluster")
        name = f"f{os.getpid()}_{n}"
        template = "mf_template" if migrated else "template0"
        cluster.psql(f"CREATE DATABASE {name} TEMPLATE {template} STRATEGY FILE_COPY")
        made.append(name)
        return str(cluster.url(name))

    yield make
    if made:
        cluster = request.getfixturevalue("pg_cluster")
        for name in made:
            cluster.psql(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            )
            cluster.psql(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def mfcli_nodb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> Callable[..., Any]:
    """The CLI for what needs no database (help, usage errors): runs once, not per backend."""
    from tests.support.cli import run_cli

    monkeypatch.setenv("MULTIFLEXI_CONFIG", os.devnull)
    monkeypatch.setenv("MULTIFLEXI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MULTIFLEXI_DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    monkeypatch.setenv("MULTIFLEXI_SOCKET", str(tmp_path / "mf.sock"))
    return lambda *args: run_cli(capsys, *args)


# --- one database per module and backend, emptied before each test ----------------------------
#
# Creating a PostgreSQL database per test costs ~0.3 s (more on a busy machine). Modules that
# only need "an empty, migrated database" per test override ``db_url`` with
# ``reused_db_url``: every test still starts from empty tables (ids restart at 1), on its own
# data dir, but the database itself is made once per module.


def _empty_tables(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = list(reversed(Base.metadata.sorted_tables))
            if conn.dialect.name == "postgresql":
                conn.execute(text("SET LOCAL lock_timeout = '10s'"))
                # The audit table's trigger refuses TRUNCATE (the product's promise); the
                # test superuser empties it between tests with triggers off for this txn.
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                names = ", ".join(f'"{t.name}"' for t in tables)
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    conn.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def _module_dbs(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    made: dict[str, str] = {}
    yield made
    if "postgresql" in made:
        cluster = request.getfixturevalue("pg_cluster")
        name = str(make_url(made["postgresql"]).database)
        cluster.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        )
        cluster.psql(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def reused_db_url(backend: str, request: pytest.FixtureRequest, _module_dbs: dict[str, str],
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty, migrated database of the test's backend (made once per module)."""
    url = _module_dbs.get(backend)
    if url is None:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('moduledb') / 'multiflexi.db'}"
            db = Database(url)
            db.upgrade()
            db.dispose()
        else:
            cluster = request.getfixturevalue("pg_cluster")
            name = f"m{os.getpid()}_{next(_fresh)}"
            cluster.psql(f"CREATE DATABASE {name} TEMPLATE mf_template")
            url = str(cluster.url(name))
        _module_dbs[backend] = url
        return url
    if backend == "postgresql":  # a connection left over by the previous test must not block
        cluster = request.getfixturevalue("pg_cluster")
        name = str(make_url(url).database)
        cluster.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     f"WHERE datname = '{name}' AND pid <> pg_backend_pid()")
    _empty_tables(url)
    return url
