"""A company's Credentials tab: its credentials (secret values masked) and keys to add one
(`n`), change one (`e`, or `enter`) and clone one (`c`). Credentials are an admin's: the
list and the keys are shown to the company's admins only."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import actions
from multiflexi_tui.connection import link_of
from multiflexi_tui.widgets.list_table import ListTable


class CredentialsPane(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New credential", id="credential-new"),
        Binding("e", "edit", "Edit", id="credential-edit"),
        Binding("c", "clone", "Clone", id="credential-clone"),
    ]

    DEFAULT_CSS = """
    CredentialsPane { height: 1fr; }
    CredentialsPane > ListTable { height: 1fr; }
    """

    def __init__(self, company: dict[str, Any], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.company = company
        self.items: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield ListTable(id="credential-table")

    def on_mount(self) -> None:
        table = self.query_one(ListTable)
        for key, label in (("id", "ID"), ("name", "Name"), ("type", "Type"),
                           ("values", "Values")):
            table.add_column(label, key=key)

    @property
    def admin(self) -> bool:
        return link_of(self).may("admin", self.company["id"])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("new", "edit", "clone"):  # hidden from those who may not
            return self.admin
        return True

    @work(exclusive=True, group="credentials-load", exit_on_error=False)
    async def load(self, select: int | None = None) -> None:
        table = self.query_one(ListTable)
        if not self.admin:
            table.clear()
            table.add_row("", Text("(credentials are shown to the company's admins)",
                                   style="dim"), "", "")
            return
        try:
            reply = await link_of(self).call("credential.list", company_id=self.company["id"])
        except MultiFlexiError as exc:
            self.notify(exc.message, severity="error")
            return
        self.items = list(reply.get("items") or [])
        table.clear()
        for cred in self.items:
            values = ", ".join(f"{k}={v}" for k, v in (cred.get("values") or {}).items())
            table.add_row(cred["id"], cred.get("name") or "", cred.get("type") or "",
                          values, key=str(cred["id"]))
        if select is not None:
            try:
                table.move_cursor(row=table.get_row_index(str(select)), animate=False)
            except Exception:  # gone meanwhile
                pass

    def current(self) -> dict[str, Any] | None:
        table = self.query_one(ListTable)
        if not self.items or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((c for c in self.items if str(c["id"]) == key), None)

    def _reload(self, cred: dict[str, Any] | None) -> None:
        if cred:
            self.load(select=int(cred["id"]) if cred.get("company_id") == self.company["id"]
                      else None)

    def action_new(self) -> None:
        actions.edit_credential(self, self.company, None, self._reload)

    def _chosen(self) -> dict[str, Any] | None:
        cred = self.current()
        if cred is None:
            self.notify("no credential here: n adds one", severity="warning")
        return cred

    def action_edit(self) -> None:
        cred = self._chosen()
        if cred is not None:
            actions.edit_credential(self, self.company, cred, self._reload)

    def action_clone(self) -> None:
        cred = self._chosen()
        if cred is not None:
            actions.clone(self, "credential", cred, self._reload)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.admin:
            self.action_edit()
