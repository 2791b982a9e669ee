"""A company's Environment tab: variables every job of the company gets (after the
applications' defaults, before credentials; secret ones stored encrypted and shown
masked), with keys to set one (`n`, `e`) and to unset one (`x`)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from multiflexi.errors import MultiFlexiError
from multiflexi_tui.connection import link_of
from multiflexi_tui.widgets.list_table import ListTable


def company_ref(company: dict[str, Any]) -> str:
    """How the company is named in ``company.env.*``, ``*.clone`` and bulk selections."""
    return str(company.get("slug") or company["id"])


class CompanyEnvPane(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "set", "Set variable", id="env-set"),
        Binding("e", "edit", "Edit", id="env-edit"),
        Binding("x", "unset", "Unset", id="env-unset"),
    ]

    DEFAULT_CSS = """
    CompanyEnvPane { height: 1fr; }
    CompanyEnvPane > ListTable { height: 1fr; }
    CompanyEnvPane > #env-note { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, company: dict[str, Any], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.company = company
        self.items: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield ListTable(id="env-table")
        yield Static("Every job of the company gets these (a template's own values and "
                     "its credentials win).", id="env-note")

    def on_mount(self) -> None:
        table = self.query_one(ListTable)
        for key, label in (("key", "Variable"), ("value", "Value"), ("secret", "Secret")):
            table.add_column(label, key=key)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("set", "edit", "unset"):  # hidden from those who may not
            return link_of(self).may("admin", self.company["id"])
        return True

    @work(exclusive=True, group="env-load", exit_on_error=False)
    async def load(self) -> None:
        table = self.query_one(ListTable)
        try:
            reply = await link_of(self).call("company.env.list",
                                              company=company_ref(self.company))
        except MultiFlexiError as exc:
            table.clear()
            table.add_row(Text(exc.message, style="red"), "", "")
            return
        self.items = list(reply.get("items", []) if isinstance(reply, dict) else reply)
        table.clear()
        for entry in self.items:
            secret = bool(entry.get("secret"))
            table.add_row(entry["key"], Text(str(entry.get("value") or ""),
                                             style="dim italic" if secret else ""),
                          "yes" if secret else "", key=str(entry["key"]))
        if not self.items:
            table.add_row(Text("no variables: n sets one", style="dim"), "", "")

    def current(self) -> dict[str, Any] | None:
        table = self.query_one(ListTable)
        if not self.items or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((e for e in self.items if e["key"] == key), None)

    def _done(self, entry: dict[str, Any] | None) -> None:
        if entry:
            self.notify(f"{entry['key']} set for {company_ref(self.company)}")
            self.load()

    def action_set(self) -> None:
        from multiflexi_tui.screens.env_form import EnvVarScreen

        self.app.push_screen(EnvVarScreen(self.company), self._done)

    def _chosen(self) -> dict[str, Any] | None:
        entry = self.current()
        if entry is None:
            self.notify("no variable here: n sets one", severity="warning")
        return entry

    def action_edit(self) -> None:
        from multiflexi_tui.screens.env_form import EnvVarScreen

        entry = self._chosen()
        if entry is not None:
            self.app.push_screen(EnvVarScreen(self.company, entry), self._done)

    def action_unset(self) -> None:
        from multiflexi_tui.screens.confirm import ConfirmScreen

        entry = self._chosen()
        if entry is None:
            return
        where = company_ref(self.company)

        async def unset() -> None:
            try:
                await link_of(self).call("company.env.unset", company=where,
                                         key=entry["key"])
            except MultiFlexiError as exc:
                self.notify(exc.message, title="Cannot unset", severity="error")
                return
            self.notify(f"{entry['key']} unset for {where}")
            self.load()

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_worker(unset(), group="env-unset", exit_on_error=False)

        self.app.push_screen(ConfirmScreen(
            f"Unset {entry['key']} for {where}?",
            "Its jobs get the application's default (or a credential's value) again."),
            confirmed)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.check_action("edit", ()):
            self.action_edit()
