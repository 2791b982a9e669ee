"""Shared pieces of the benchmarks: installations on SQLite or PostgreSQL, the daemon."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from multiflexi.settings import load_settings  # noqa: E402
from multiflexid.core import Core  # noqa: E402
from tests.support.daemon import DaemonProcess  # noqa: E402
from tests.support.pgcluster import PgCluster  # noqa: E402


@dataclass
class Install:
    backend: str
    env: dict[str, str]
    root: Path
    cluster: PgCluster | None = None

    def core(self) -> Core:
        os.environ.update(self.env)
        core = Core(load_settings())
        core.ensure_schema()
        return core

    def daemon(self, **extra: str) -> DaemonProcess:
        return DaemonProcess(self.env, self.root, extra_env=extra)


@contextlib.contextmanager
def install(backend: str, *, fsync: bool = True) -> Iterator[Install]:
    """A fresh installation; PostgreSQL is a cluster of its own with fsync as asked."""
    root = Path(tempfile.mkdtemp(prefix=f"mfbench-{backend}-"))
    env = {
        "MULTIFLEXI_CONFIG": os.devnull,
        "MULTIFLEXI_DATA_DIR": str(root / "data"),
        "MULTIFLEXI_SOCKET": str(root / "mf.sock"),
        "MULTIFLEXI_NODE": "bench",
        "MULTIFLEXI_LOG_TARGET": "stderr",
    }
    cluster = None
    try:
        if backend == "postgresql":
            # pg_stat_statements: what each benchmark asks of the server, counted
            cluster = PgCluster(fsync=fsync, extra=[
                "-c shared_preload_libraries=pg_stat_statements",
                "-c pg_stat_statements.track=all"]).start()
            env["MULTIFLEXI_DATABASE_URL"] = cluster.url()
        else:
            env["MULTIFLEXI_DATABASE_URL"] = f"sqlite:///{root / 'data' / 'multiflexi.db'}"
        yield Install(backend, env, root, cluster)
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def serial_true_rate(n: int) -> float:
    """Jobs per second of a bare serial ``subprocess.run(["true"])`` loop (the baseline)."""
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], check=True)
    return n / (time.perf_counter() - start)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


__all__ = ["ROOT", "Install", "install", "pct", "serial_true_rate", "statistics"]
