"""multiflexi-tui: browse and steer multiflexid over its socket (`multiflexi-tui --help`)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, ClassVar

from textual import events
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from multiflexi.settings import load_settings
from multiflexi_tui.connection import DEFAULT_SOCKET, DaemonLink
from multiflexi_tui.messages import Open
from multiflexi_tui.screens.help import HelpScreen
from multiflexi_tui.screens.main import MainScreen

log = logging.getLogger(__name__)


class MultiFlexiApp(App[None]):
    """The TUI. Every daemon call runs in a worker; nothing here touches a database."""

    CSS_PATH = "app.tcss"
    TITLE = "MultiFlexi"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
    ]

    def __init__(self, socket: str | Path, *, initial_view: str = "jobs",
                 backoff_max: float = 5.0, cursor_blink: bool = True) -> None:
        super().__init__()
        self.link = DaemonLink(self, socket, backoff_max=backoff_max)
        self.initial_view = initial_view
        self.cursor_blink = cursor_blink

    def on_mount(self) -> None:
        self.push_screen(MainScreen(self.initial_view))
        self.run_worker(self.link.run(), name="daemon-link", group="daemon-link",
                        exclusive=True, exit_on_error=False)

    async def action_quit(self) -> None:
        await self.link.close()
        self.exit()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def on_open(self, message: Open) -> None:
        """Route a widget's wish to see a record to the screen that shows it."""
        from multiflexi_tui.screens.app_detail import AppScreen
        from multiflexi_tui.screens.artifact import ArtifactScreen
        from multiflexi_tui.screens.company import CompanyScreen
        from multiflexi_tui.screens.job import JobScreen
        from multiflexi_tui.screens.template import TemplateScreen

        rec, tab = message.record, message.tab
        screens = {
            "job": lambda: JobScreen(int(rec["id"]), tab=tab),
            "template": lambda: TemplateScreen(rec, tab=tab),
            "company": lambda: CompanyScreen(rec, tab=tab),
            "app": lambda: AppScreen(rec, tab=tab),
            "artifact": lambda: ArtifactScreen(rec),
        }
        self.push_screen(screens[message.kind]())

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # Snapshot tests switch the blinking cursor off, so screens render the same each time.
        if not self.cursor_blink and hasattr(event.widget, "cursor_blink"):
            event.widget.cursor_blink = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers catch the daemon's errors themselves; anything else is a bug: say so in
        # one line (and in the log), never as a traceback over the screen.
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            error: Any = event.worker.error
            log.error("worker %s failed", event.worker.name, exc_info=error)
            self.notify(f"{type(error).__name__}: {error}", title="Internal error",
                        severity="error")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="multiflexi-tui",
        description="The admin's terminal UI of MultiFlexi: companies, applications, run "
                    "templates and jobs, live from multiflexid over its Unix socket. "
                    "Press ? inside for every key.",
    )
    parser.add_argument(
        "--socket", metavar="PATH", default=None,
        help="multiflexid's socket (default: $MULTIFLEXI_SOCKET, else `socket` in "
             f"/etc/multiflexi/multiflexi.conf, else {DEFAULT_SOCKET})",
    )
    parser.add_argument("--view", choices=("companies", "apps", "templates", "jobs"),
                        default="jobs", help="the list to open first (default: jobs)")
    args = parser.parse_args(argv)
    MultiFlexiApp(args.socket or default_socket(), initial_view=args.view).run()


def default_socket() -> str:
    """Where the daemon listens, found the way multiflexi-cli finds it."""
    if os.environ.get("MULTIFLEXI_SOCKET"):
        return os.environ["MULTIFLEXI_SOCKET"]
    try:
        return str(load_settings().socket)
    except Exception:  # an unreadable or broken config file: the daemon's default
        return DEFAULT_SOCKET


if __name__ == "__main__":
    main()
