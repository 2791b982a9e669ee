"""Fault tests share one helper: N daemons (nodes) on one PostgreSQL database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiflexid.core import Core
from multiflexid.store.db import Database
from tests.conftest import Env
from tests.support.daemon import DaemonProcess
from tests.support.pgcluster import PgCluster

# Short leases so a dead node is noticed within seconds in tests.
FAST_LEASES = {"MULTIFLEXI_LEASE_SECONDS": "3", "MULTIFLEXI_HEARTBEAT_SECONDS": "0.5"}


class Nodes:
    def __init__(self, env: Env, tmp: Path) -> None:
        self.env = env
        self.tmp = tmp
        self.procs: dict[str, DaemonProcess] = {}

    def start(self, name: str, **extra: str) -> DaemonProcess:
        env = {**self.env.vars(), "MULTIFLEXI_NODE": name,
               "MULTIFLEXI_SOCKET": str(self.tmp / f"{name}.sock"),
               "MULTIFLEXI_DATA_DIR": str(self.env.data_dir),
               **FAST_LEASES, **extra}
        d = DaemonProcess(env, self.tmp).start()
        self.procs[name] = d
        return d

    def stop_all(self) -> None:
        for d in self.procs.values():
            if d.proc is not None and d.proc.poll() is None:
                d.stop()


@pytest.fixture
def pg_env(pg_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    name = f"fault{os.getpid()}_{abs(hash(tmp_path)) % 100000}"
    pg_cluster.psql(f"CREATE DATABASE {name} TEMPLATE mf_template")
    env = Env(tmp_path / "data", pg_cluster.url(name), tmp_path / "mf.sock")
    env.data_dir.mkdir()
    for key, value in env.vars().items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def pg_core(pg_env: Env) -> Iterator[Core]:
    from multiflexi.settings import load_settings

    c = Core(load_settings())
    yield c
    c.close()


@pytest.fixture
def nodes(pg_env: Env, tmp_path: Path) -> Iterator[Nodes]:
    n = Nodes(pg_env, tmp_path)
    yield n
    n.stop_all()


__all__ = ["FAST_LEASES", "Database", "Nodes"]
