"""The link to the daemon: not running, started later, restarted, refusing us."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.job import JobScreen
from multiflexi_tui.widgets.output_log import OutputLog
from multiflexi_tui.widgets.resource_view import ResourceView
from tests.conftest import Env
from tests.support.daemon import DaemonProcess
from tests.tui.support import run_app, screen_of, screen_text, wait_for, wait_text


def jobs_view(app: MultiFlexiApp) -> ResourceView:
    return app.screen.query_one("#jobs-view", ResourceView)


def test_daemon_down_then_started_then_restarted(
        tui_env: Env, seeded: dict[str, int], tui_dir: Path) -> None:
    daemon = DaemonProcess(tui_env.vars(), tui_dir)

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        # not running: a clear message, no traceback, the lists say so
        await wait_text(pilot, "multiflexid is not running (no socket at")
        assert app.link.state.message == (f"multiflexid is not running (no socket at "
                                          f"{tui_env.socket}) · reconnecting automatically")
        assert "reconnecting automatically" in screen_text(app)
        assert "not connected to multiflexid" in screen_text(app)
        assert not app.link.connected
        # started: the TUI finds it by itself and loads
        daemon.start()
        await wait_for(pilot, lambda: app.link.connected, "the connection", timeout=30)
        await wait_for(pilot, lambda: jobs_view(app).table.row_count == 5, "the jobs")
        assert "● MultiFlexi · multiflexid" in screen_text(app)
        # restarted: the loss is said, then the TUI is back and subscribed again
        daemon.stop()
        await wait_text(pilot, "reconnecting automatically")
        daemon.start()
        await wait_for(pilot, lambda: app.link.connected, "the reconnection", timeout=30)
        job = daemon.call("runtemplate.run", id=seeded["manual"])
        await wait_for(pilot, lambda: str(job["id"]) in [str(k.value) for k in
                                                         jobs_view(app).table.rows],
                       "a job pushed after the reconnect")
        await wait_for(pilot, lambda: "succeeded" in str(
            jobs_view(app).table.get_row(str(job["id"]))[1]), "its end, pushed too")

    try:
        run_app(tui_env.socket, scenario)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()


def test_a_followed_job_survives_a_daemon_restart(
        tui_env: Env, seeded: dict[str, int], tui_dir: Path) -> None:
    daemon = DaemonProcess(tui_env.vars(), tui_dir).start()

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: jobs_view(app).table.row_count == 5, "the jobs")
        jobs_view(app).select_key(str(seeded["job5"]))
        await pilot.press("l")
        screen = await screen_of(pilot, JobScreen)
        log = screen.query_one(OutputLog)
        await wait_for(pilot, lambda: "oops" in log.text_written, "the output")
        before = list(log.text_written)
        daemon.stop()
        await wait_text(pilot, "reconnecting automatically")
        daemon.start()
        await wait_for(pilot, lambda: app.link.connected, "the reconnection", timeout=30)
        await pilot.pause(0.5)
        assert log.text_written == before  # continued from the last seq: nothing twice

    try:
        run_app(tui_env.socket, scenario)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()


class RefusingPeer:
    """A socket that answers like multiflexid refusing a user outside group multiflexi
    (running the TUI as another uid is what the e2e tests of the daemon do)."""

    MESSAGE = ("user bob (uid 1002) may not use multiflexid: add it to group multiflexi "
               "(sudo adduser bob multiflexi) and log in again")

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        frame = json.dumps({"jsonrpc": "2.0", "id": None, "error": {
            "code": -32003, "message": self.MESSAGE, "data": {"name": "forbidden"}}})
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(frame.encode() + b"\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_refused_peer_sees_the_daemons_reason(tui_dir: Path) -> None:
    path = tui_dir / "refusing.sock"
    peer = RefusingPeer(path)

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_text(pilot, "refused this user")
        text = screen_text(app)
        assert "add it to group" in text
        assert app.link.state.refused
        assert "Traceback" not in text

    try:
        run_app(path, scenario)
    finally:
        peer.close()
        os.unlink(path)


def test_a_stale_socket_is_explained(tui_dir: Path) -> None:
    """multiflexid killed with -9 leaves its socket file behind; nobody listens on it."""
    path = tui_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_text(pilot, "nothing accepts connections on")
        assert not app.link.state.refused

    run_app(path, scenario, size=(120, 30))
