"""A throwaway PostgreSQL cluster for tests and benchmarks (Unix socket only).

Started with the server binaries of the machine's PostgreSQL (``/usr/lib/postgresql/*``);
as root, ``initdb`` and the server run as user ``postgres`` (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


class PgClusterError(RuntimeError):
    pass


def pg_bindir() -> Path:
    env = os.environ.get("MULTIFLEXI_PG_BINDIR")
    if env:
        return Path(env)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise PgClusterError(
        "PostgreSQL server binaries not found: apt-get install postgresql "
        "(or set MULTIFLEXI_PG_BINDIR)"
    )


class PgCluster:
    """``with PgCluster(fsync=False) as pg: pg.url("dbname")``."""

    def __init__(self, *, fsync: bool = False, extra: list[str] | None = None) -> None:
        self.fsync = fsync
        self.extra = extra or []
        self.bindir = pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="mfpg-"))
        self.data = self.root / "data"
        self.user = "postgres" if os.geteuid() == 0 else None
        self.superuser = "postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise PgClusterError(f"{' '.join(args[:2])} failed: {proc.stderr.strip()}")
        return proc

    def start(self) -> PgCluster:
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.superuser,
            "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )
        self.start_server()
        return self

    def start_server(self) -> None:
        opts = [f"-k {self.root}", "-c listen_addresses=''", "-c max_connections=300",
                f"-c fsync={'on' if self.fsync else 'off'}", *self.extra]
        if not self.fsync:
            opts += ["-c synchronous_commit=off", "-c full_page_writes=off"]
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
            "-w", "-o", " ".join(opts), "start",
        )

    def stop_server(self, mode: str = "fast") -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        try:
            self.stop_server("immediate")
        except PgClusterError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.superuser}@/{dbname}?host={self.root}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", str(self.root), "-U", self.superuser, "-d",
             dbname, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise PgClusterError(f"psql: {proc.stderr.strip()}")
        return proc.stdout

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
