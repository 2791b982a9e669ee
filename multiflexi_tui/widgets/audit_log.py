"""The audit trail of one company or one run template: who changed what, when, from where
(``audit.list``). The row under the cursor shows its field diff below the table; secret
values are only ever "set", "changed" or "removed"."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import link_of
from multiflexi_tui.widgets.list_table import ListTable


def diff_text(diff: dict[str, Any]) -> Text:
    text = Text()
    for name in sorted(diff):
        change = diff[name]
        shown = (f"{change[0]!r} → {change[1]!r}" if isinstance(change, list)
                 else str(change))
        text.append(f"{name}: ", style="bold")
        text.append(shown + "\n")
    return text


class AuditLog(Vertical):
    DEFAULT_CSS = """
    AuditLog { height: 1fr; }
    AuditLog > #audit-table { height: 2fr; min-height: 4; }
    AuditLog > #audit-diff { height: 1fr; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, *, company_id: int | None = None, runtemplate_id: int | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.params = ({"runtemplate_id": runtemplate_id} if runtemplate_id is not None
                       else {"company_id": company_id})
        self.entries: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield ListTable(id="audit-table")
        yield Static("", id="audit-diff")

    def on_mount(self) -> None:
        table = self.query_one("#audit-table", ListTable)
        for key, label in (("at", "When"), ("user", "Who"), ("via", "Via"),
                           ("summary", "What")):
            table.add_column(label, key=key)

    @work(exclusive=True, group="audit-load", exit_on_error=False)
    async def load(self) -> None:
        try:
            reply = await link_of(self).call_with("audit.list", {**self.params, "limit": 200})
        except MultiFlexiError as exc:
            self.query_one("#audit-diff", Static).update(Text(exc.message, style="red"))
            return
        table = self.query_one("#audit-table", ListTable)
        table.clear()
        self.entries = {}
        for e in reply.get("items") or []:
            who = e["user"] + (f" ({e['login_user']})" if e.get("login_user") else "")
            table.add_row(fmt.short_time(e.get("at")), who, e.get("via") or "",
                          e.get("summary") or "", key=str(e["id"]))
            self.entries[str(e["id"])] = e
        if not self.entries:
            self.query_one("#audit-diff", Static).update("no changes recorded")

    @on(DataTable.RowHighlighted, "#audit-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        entry = self.entries.get(str(event.row_key.value))
        if entry is not None:
            self.query_one("#audit-diff", Static).update(diff_text(entry.get("diff") or {}))
