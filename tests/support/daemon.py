"""Start the real ``multiflexid`` as a child process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from multiflexi.client import Client

BIN = Path(sys.executable).parent


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies (killed by a timeout, say), so no
    test daemon outlives its test run."""
    import ctypes
    import signal as _signal

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, _signal.SIGTERM)


def program(name: str) -> str:
    return str(BIN / name)


class NotifyListener:
    """A NOTIFY_SOCKET like systemd's: collects the daemon's sd_notify datagrams."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, BlockingIOError):
                return self.messages
            self.messages.append(data.decode())

    def wait_for(self, needle: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for msg in self.collect():
                if needle in msg:
                    return msg
        raise AssertionError(f"no {needle!r} from the daemon; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


class DaemonProcess:
    def __init__(self, env: dict[str, str], workdir: Path, extra_env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.env = {**os.environ, **env, **(extra_env or {})}
        self.env.setdefault("MULTIFLEXI_LOG_TARGET", "stderr")
        self.socket = Path(self.env["MULTIFLEXI_SOCKET"])
        self.workdir = workdir
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"multiflexid-{int(time.time() * 1000)}.log"

    def start(self, wait: bool = True) -> DaemonProcess:
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [program("multiflexid"), *self.args], env=self.env, stdout=self._log,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"multiflexid exited {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.call("daemon.status")
                return
            except Exception:
                time.sleep(0.05)
        raise AssertionError(f"multiflexid not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, timeout: float = 30) -> Client:
        return Client(self.socket, timeout=timeout)

    def call(self, method: str, **params: Any) -> Any:
        with self.client() as c:
            return c.call(method, **params)

    def wait_job(self, job_id: int, states: tuple[str, ...] = (
            "succeeded", "failed", "timed_out", "cancelled", "lost", "blocked"),
            timeout: float = 30.0) -> dict[str, Any]:
        """Until the job is in one of ``states``. "running" means really started (its
        process has a pid), not just claimed by the daemon for its next free slot."""
        end = time.monotonic() + timeout
        job: dict[str, Any] = {}
        while time.monotonic() < end:
            job = self.call("job.get", id=job_id)
            if job["state"] in states and (job["state"] != "running" or job["pid"]):
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job.get('state')} after {timeout} s\n"
                             f"{self.log()}")

    def output(self, job_id: int) -> str:
        text, after = "", -1
        while True:
            page = self.call("job.output", id=job_id, after_seq=after)
            text += "".join(c["data"] for c in page["chunks"])
            if not page["chunks"]:
                return text
            after = page["last_seq"]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"multiflexid did not stop in {timeout} s:\n{self.log()}") from None
        self._log.close()
        return self.proc.returncode

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self._log.close()


@contextmanager
def running_daemon(env: dict[str, str], workdir: Path, **kw: Any) -> Iterator[DaemonProcess]:
    d = DaemonProcess(env, workdir, **kw).start()
    try:
        yield d
    finally:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()
