"""What the tests' engine services (``podman system service``, ``dockerd``) share: a child
process to pause (it accepts connections but nothing answers), kill (as if it crashed) or
stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


class ServiceProcess:
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the socket accepts connections but nothing answers."""
        if self.proc:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc:
            os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as if the service crashed (its containers keep running)."""
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)

    def _end(self, timeout: float) -> None:
        """SIGTERM (resumed first if paused); SIGKILL if it has not ended in ``timeout``."""
        if not self.running():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
