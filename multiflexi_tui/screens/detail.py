"""The shape every detail screen shares: connection bar, a headline, tabs, footer.

Subclasses compose their panes in :meth:`panes`, switch tabs with number keys (as the main
screen does), go back with `esc`, and (re)load their data in :meth:`load` whenever the
link to the daemon is (re)established.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static, TabbedContent, TabPane

from multiflexi_tui.connection import DaemonLink, LinkState, link_of
from multiflexi_tui.widgets.connection_bar import ConnectionBar
from multiflexi_tui.widgets.resource_view import ResourceView


class DetailScreen(Screen[None]):
    TABS: ClassVar[tuple[tuple[str, str], ...]] = ()  # (pane id, title)

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back", id="back")]

    DEFAULT_CSS = """
    DetailScreen > #headline { height: auto; max-height: 3; padding: 0 1;
                               background: $boost; text-style: bold; }
    DetailScreen > TabbedContent { height: 1fr; }
    DetailScreen TabPane { padding: 0; }
    """

    def __init__(self, initial_tab: str | None = None) -> None:
        super().__init__()
        ids = [t[0] for t in self.TABS]
        self.initial_tab = initial_tab if initial_tab in ids else (ids[0] if ids else None)
        self._generation = -1

    def compose(self) -> ComposeResult:
        yield ConnectionBar()
        yield Static("", id="headline")
        with TabbedContent(initial=self.initial_tab or "", id="tabs"):
            for (pane_id, title), content in zip(self.TABS, self.panes(), strict=True):
                with TabPane(title, id=pane_id):
                    yield content
        yield Footer(compact=True)

    def panes(self) -> Iterable[Widget]:
        """One widget per entry of TABS, in order."""
        return []

    @property
    def link(self) -> DaemonLink:
        return link_of(self)

    def on_mount(self) -> None:
        self.link.state_changed.subscribe(self, self._link_state)
        self._link_state(self.link.state)
        if self.initial_tab:
            self.call_after_refresh(self.action_tab, self.initial_tab)

    def _link_state(self, state: LinkState) -> None:
        if state.connected and state.generation != self._generation:
            self._generation = state.generation
            self.load()

    def load(self) -> None:
        """Fetch what the screen shows (called on mount and after every reconnect)."""

    def headline(self, text: Text | str) -> None:
        self.query_one("#headline", Static).update(
            text if isinstance(text, Text) else Text(text))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, pane_id: str) -> None:
        tabs = self.query_one(TabbedContent)
        try:
            pane = tabs.get_pane(pane_id)
            tabs.active = pane_id
        except (ValueError, NoMatches):  # the screen is being taken down
            return
        lists = pane.query(ResourceView)
        if lists:
            lists.first().focus_table()
            return
        focusable = [w for w in pane.query("*") if w.focusable and w.display]
        if focusable:
            focusable[0].focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        # Clicking a tab (or arrows on the tab bar) focuses the pane's content too.
        if event.pane.id and not self.query_one(TabbedContent).has_focus_within:
            self.action_tab(event.pane.id)
