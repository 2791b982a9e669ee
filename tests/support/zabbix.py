"""Debian's Zabbix for tests: the agent (``zabbix-agent``) with the packaged MultiFlexi
items, the server (``zabbix-server-pgsql``) on the tests' own PostgreSQL cluster, and the
frontend's API (``zabbix-frontend-php``) under PHP's built-in web server.

Nothing of the machine's Zabbix is used or changed: every program gets its own config,
ports and files in a temporary directory. The frontend reads its database settings only
from /etc/zabbix/zabbix.conf.php (Debian's build): it runs in a mount namespace of its own
where /etc/zabbix is a directory of the test (``unshare --mount``), so the machine's file
is never written.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.pgcluster import PgCluster

REPO = Path(__file__).resolve().parents[2]
AGENT_ITEMS = REPO / "zabbix" / "multiflexi.conf"
TEMPLATE = REPO / "zabbix" / "multiflexi_template.yaml"
SQL = Path("/usr/share/zabbix-server-pgsql")
FRONTEND = Path("/usr/share/zabbix")


def free_port() -> int:
    """A free TCP port that Zabbix accepts (ListenPort is at most 32767, below the
    kernel's range of ephemeral ports)."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port between 20000 and 32000")


def wait(check: Callable[[], Any], what: str, timeout: float = 60.0,
         log: Callable[[], str] = lambda: "") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{log()}")


def _require(path: str, package: str) -> None:
    if not Path(path).exists():
        raise AssertionError(f"{path} not found: apt-get install {package} "
                             "(.ci/system-packages.sh lists it)")


class _Process:
    def __init__(self, workdir: Path, name: str) -> None:
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._out = (self.dir / "stdout.log").open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.STDOUT,
                                     env=env, start_new_session=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc is not None:
            self._out.close()
        self.proc = None

    def log(self) -> str:
        text = ""
        for path in (self.log_path, self.dir / "stdout.log"):
            try:
                text += path.read_text(errors="replace")[-3000:]
            except FileNotFoundError:
                pass
        return text


class ZabbixAgent(_Process):
    """zabbix_agentd in the foreground with the packaged MultiFlexi items (the file the
    package installs, included as Debian's agent config includes it), with ``env`` (PATH
    to this checkout's multiflexi-cli and the settings of the test's installation).

    It runs as root (AllowRoot=1), not as user zabbix like Debian's service: the tests'
    multiflexi-cli lives in a virtualenv on an interpreter under /root, which user zabbix
    cannot execute. What user zabbix needs on a real host is in the README."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        _require("/usr/sbin/zabbix_agentd", "zabbix-agent")
        super().__init__(workdir, "agent")
        self.port = free_port()
        self.env = env
        self.conf = self.dir / "zabbix_agentd.conf"
        self.conf.write_text(
            f"Server=127.0.0.1\nListenIP=127.0.0.1\nListenPort={self.port}\n"
            f"StartAgents=2\nHostname=multiflexi-test\nLogFile={self.log_path}\n"
            f"LogFileSize=0\nPidFile={self.dir / 'agentd.pid'}\nTimeout=30\n"
            f"AllowRoot=1\nInclude={AGENT_ITEMS}\n")

    def start(self) -> ZabbixAgent:
        self._start(["/usr/sbin/zabbix_agentd", "-f", "-c", str(self.conf)], self.env)
        from zabbix_utils import Getter

        wait(lambda: Getter("127.0.0.1", self.port, timeout=5).get("agent.ping").value == "1",
             "the agent", 30, self.log)
        return self

    def get(self, key: str) -> str:
        from zabbix_utils import Getter

        answer = Getter("127.0.0.1", self.port, timeout=40).get(key)
        if answer.error:
            raise AssertionError(f"{key}: {answer.error}\n{self.log()}")
        return str(answer.value)


def create_zabbix_database(cluster: PgCluster, name: str = "zabbix") -> str:
    """A Zabbix 6.0 database from Debian's SQL files (schema, images, data): ~10-20 s."""
    _require(str(SQL / "schema.sql.gz"), "zabbix-server-pgsql")
    cluster.psql(f"CREATE DATABASE {name}")
    for part in ("schema", "images", "data"):
        gz = subprocess.Popen(["zcat", str(SQL / f"{part}.sql.gz")], stdout=subprocess.PIPE)
        done = subprocess.run([str(cluster.bindir / "psql"), "-q", "-h", str(cluster.root),
                               "-U", cluster.superuser, "-d", name, "-v", "ON_ERROR_STOP=1"],
                              stdin=gz.stdout, capture_output=True, check=False)
        gz.wait()
        if done.returncode != 0:
            raise AssertionError(f"loading {part}.sql: {done.stderr.decode()[-2000:]}")
    return name


class ZabbixServer(_Process):
    """zabbix_server in the foreground on the cluster's database, as few processes as it
    runs with, reading its configuration from the database every second."""

    def __init__(self, workdir: Path, cluster: PgCluster, database: str) -> None:
        _require("/usr/sbin/zabbix_server", "zabbix-server-pgsql")
        super().__init__(workdir, "server")
        self.port = free_port()
        self.conf = self.dir / "zabbix_server.conf"
        settings = {
            "ListenIP": "127.0.0.1", "ListenPort": self.port, "LogFile": self.log_path,
            "LogFileSize": 0, "PidFile": self.dir / "server.pid", "SocketDir": self.dir,
            "DBHost": cluster.root, "DBName": database, "DBUser": cluster.superuser,
            "AllowRoot": 1, "StartPollers": 1, "StartPollersUnreachable": 1,
            "StartPingers": 0, "StartDiscoverers": 0, "StartHTTPPollers": 0,
            "StartTimers": 1, "StartEscalators": 1, "StartAlerters": 1, "StartTrappers": 2,
            "StartPreprocessors": 1, "StartLLDProcessors": 1, "StartHistoryPollers": 1,
            "StartDBSyncers": 1, "CacheUpdateFrequency": 1, "CacheSize": "16M",
            "HistoryCacheSize": "16M", "HistoryIndexCacheSize": "4M",
            "TrendCacheSize": "4M", "ValueCacheSize": "8M", "Timeout": 30,
        }
        self.conf.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def start(self) -> ZabbixServer:
        self._start(["/usr/sbin/zabbix_server", "-f", "-c", str(self.conf)])
        wait(lambda: "started [trapper #1]" in self.log(), "the server's trapper", 60,
             self.log)
        wait(lambda: socket.create_connection(("127.0.0.1", self.port), 1).close() or True,
             "the server's port", 30, self.log)
        return self


class ZabbixFrontend(_Process):
    """The frontend's API (api_jsonrpc.php) under ``php -S``, in a mount namespace where
    /etc/zabbix holds only its zabbix.conf.php for this test's database and server."""

    def __init__(self, workdir: Path, cluster: PgCluster, database: str,
                 server: ZabbixServer) -> None:
        _require(str(FRONTEND / "api_jsonrpc.php"), "zabbix-frontend-php")
        _require("/usr/bin/php", "php8.2-cli")
        super().__init__(workdir, "frontend")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api_jsonrpc.php"
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        db = {"TYPE": "POSTGRESQL", "SERVER": str(cluster.root), "PORT": "0",
              "DATABASE": database, "USER": cluster.superuser, "PASSWORD": "", "SCHEMA": "",
              "ENCRYPTION": False, "KEY_FILE": "", "CERT_FILE": "", "CA_FILE": "",
              "VERIFY_HOST": False, "CIPHER_LIST": "", "VAULT_URL": "",
              "VAULT_DB_PATH": "", "VAULT_TOKEN": "", "DOUBLE_IEEE754": True}

        def php(value: Any) -> str:
            return ("true" if value else "false") if isinstance(value, bool) \
                else "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

        (etc / "zabbix.conf.php").write_text(
            "<?php\n" + "".join(f"$DB['{k}'] = {php(v)};\n" for k, v in db.items())
            + f"$ZBX_SERVER = '127.0.0.1';\n$ZBX_SERVER_PORT = '{server.port}';\n"
            "$ZBX_SERVER_NAME = 'multiflexi-test';\n$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;\n")
        self.etc = etc

    def start(self) -> ZabbixFrontend:
        shell = (f"mount --bind {self.etc} /etc/zabbix && exec php -S 127.0.0.1:{self.port} "
                 f"-t {FRONTEND}")
        self._start(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell])
        wait(lambda: self.api().api_version(), "the frontend's API", 30, self.log)
        return self

    def api(self) -> Any:
        from zabbix_utils import ZabbixAPI

        api = ZabbixAPI(url=self.url, timeout=60)
        return api

    def login(self) -> Any:
        api = self.api()
        api.login(user="Admin", password="zabbix")  # the default user of a new database
        return api


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
