"""A real terminal for the real TUI: one tmux session on a private tmux server.

Used by tests/tui/test_tmux.py (the TUI on this machine) and tests/e2e/test_systemd.py
(the TUI over SSH in a booted container).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class Tmux:
    """One tmux session on a private tmux server (never the admin's own sessions).

    ``term``: the TERM programs in the session get (tmux's ``default-terminal``; what an
    admin's terminal says about itself, forwarded by ssh). None keeps tmux's default.
    """

    def __init__(self, name: str, term: str | None = None) -> None:
        self.server = f"mftui-{os.getpid()}-{name}"
        self.session = name
        self.term = term

    def _tmux(self, *args: str, check: bool = True) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], capture_output=True,
                              text=True, check=check, timeout=30).stdout

    def start(self, command: str, width: int = 80, height: int = 24,
              then: str = "sleep 600") -> None:
        """Run ``command``; when it ends, its exit status is printed as ``EXITED=N`` and
        ``then`` runs in the same terminal (e.g. an interactive shell)."""
        options: list[str] = []
        if self.term is not None:
            # Set on the server before the session's first program starts.
            options = ["start-server", ";", "set-option", "-g", "default-terminal",
                       self.term, ";"]
        self._tmux("-f", os.devnull, *options, "new-session", "-d", "-s", self.session,
                   "-x", str(width), "-y", str(height), f"{command}; echo EXITED=$?; {then}")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self._tmux("send-keys", "-t", self.session, *(["-l"] if literal else []), *keys)

    def screen(self) -> str:
        # check=False: right after new-session the pane may not be there yet; waits retry
        return self._tmux("capture-pane", "-p", "-t", self.session, check=False)

    def show(self, fmt: str) -> str:
        """A tmux format about the pane, e.g. ``#{alternate_on}``."""
        return self._tmux("display-message", "-p", "-t", self.session, fmt).strip()

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        text = ""
        while time.monotonic() < end:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{text}")

    def wait_text(self, needle: str, timeout: float = 30) -> str:
        return self.wait_for(lambda t: needle in t, repr(needle), timeout)

    def kill(self) -> None:
        self._tmux("kill-server", check=False)
        # tmux leaves the server's socket file behind: remove it too
        socket_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (socket_dir / self.server).unlink(missing_ok=True)
