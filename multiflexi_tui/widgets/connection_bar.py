"""The top line of every screen: is multiflexid there, and if not, why."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from multiflexi_tui.connection import LinkState, link_of


class ConnectionBar(Static):
    """Shows the daemon's version, node and our user; or the reason it cannot be reached."""

    DEFAULT_CSS = """
    ConnectionBar { height: auto; max-height: 4; padding: 0 1; background: $panel;
                    color: $text; }
    ConnectionBar.-down { background: $error; color: $text; text-style: bold; }
    ConnectionBar.-refused { background: $error; color: $text; text-style: bold; }
    """

    def on_mount(self) -> None:
        link = link_of(self)
        link.state_changed.subscribe(self, self.show_state)
        self.show_state(link.state)

    def show_state(self, state: LinkState) -> None:
        self.set_class(not state.connected and not state.refused, "-down")
        self.set_class(state.refused, "-refused")
        mark = "●" if state.connected else "✕"
        self.update(Text(f"{mark} MultiFlexi · {state.message}"))
