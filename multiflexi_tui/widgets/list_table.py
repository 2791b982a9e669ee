"""The table of every list view: a DataTable with k9s-style keys and `enter` to open."""

from __future__ import annotations

from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import DataTable


class ListTable(DataTable[object]):
    """Rows are records from the daemon; the row key is the record's id."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Open", id="open"),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None, cell_colours_under_cursor: bool = False
                 ) -> None:
        """``cell_colours_under_cursor``: the row under the cursor keeps its cells' own
        colours (a red failure stays red when the cursor is on it)."""
        super().__init__(id=id, cursor_type="row", zebra_stripes=True,
                         cursor_foreground_priority=("renderable" if cell_colours_under_cursor
                                                     else "css"))

    async def _on_idle(self, _event: events.Idle) -> None:
        """Runs before DataTable's own idle handler (Textual calls each class's), which
        measures the rows added since: redraw after it. DataTable caches a drawn cell
        without its width, so a cell drawn before that measuring would stay cut to the
        old width (a column as wide as its header) until the next change."""
        if self._require_update_dimensions or self._updated_cells:
            self.call_later(self._redraw)

    def _redraw(self) -> None:
        self._clear_caches()
        self.refresh()
