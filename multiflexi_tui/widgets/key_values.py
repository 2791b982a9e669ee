"""Label/value pairs of a detail screen (wrapping, scrollable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


class KeyValues(VerticalScroll):
    DEFAULT_CSS = """
    KeyValues { height: 1fr; padding: 0 1; }
    KeyValues > Static { width: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="pairs")

    def set_pairs(self, pairs: Iterable[tuple[str, Any]]) -> None:
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(ratio=1, overflow="fold")
        for label, value in pairs:
            if isinstance(value, Text):
                table.add_row(label, value)
            else:
                table.add_row(label, Text("—" if value in (None, "") else str(value)))
        self.query_one("#pairs", Static).update(table)
