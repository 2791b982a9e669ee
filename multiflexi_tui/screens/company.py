"""A company: its details, run templates, jobs and credentials."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui.screens.detail import DetailScreen
from multiflexi_tui.widgets.audit_log import AuditLog
from multiflexi_tui.widgets.jobs_view import JobsView
from multiflexi_tui.widgets.key_values import KeyValues
from multiflexi_tui.widgets.templates_view import TemplatesView


class CompanyScreen(DetailScreen):
    TABS = (("info", "1 Info"), ("templates", "2 Templates"), ("jobs", "3 Jobs"),
            ("credentials", "4 Credentials"), ("audit", "5 Audit"))

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("1", "tab('info')", "Info", show=False),
        Binding("2", "tab('templates')", "Templates", show=False),
        Binding("3", "tab('jobs')", "Jobs", show=False),
        Binding("4", "tab('credentials')", "Credentials", show=False),
        Binding("5", "tab('audit')", "Audit", show=False),
    ]

    def __init__(self, company: dict[str, Any], tab: str | None = None) -> None:
        super().__init__(tab)
        self.company = company

    def panes(self) -> Iterable[Widget]:
        yield KeyValues(id="info-pairs")
        yield TemplatesView(fixed={"company_id": self.company["id"]}, id="company-templates")
        yield JobsView(fixed={"company_id": self.company["id"]}, id="company-jobs")
        yield DataTable[object](id="credential-table", cursor_type="row", zebra_stripes=True)
        yield AuditLog(company_id=self.company["id"], id="company-audit")

    def on_mount(self) -> None:
        table = self.query_one("#credential-table", DataTable)
        for key, label in (("id", "ID"), ("name", "Name"), ("type", "Type"),
                           ("values", "Values")):
            table.add_column(label, key=key)
        self._show()
        super().on_mount()

    def load(self) -> None:
        self._load()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        self.query_one(AuditLog).load()
        try:
            self.company = await self.link.call("company.get", id=self.company["id"])
            self._show()
            table = self.query_one("#credential-table", DataTable)
            if not self.link.may("admin", self.company["id"]):
                table.clear()
                table.add_row("", Text("(credentials are shown to the company's admins)",
                                       style="dim"), "", "")
                return
            creds = await self.link.call("credential.list", company_id=self.company["id"])
        except MultiFlexiError as exc:
            self.notify(exc.message, severity="error")
            return
        table = self.query_one("#credential-table", DataTable)
        table.clear()
        for cred in creds.get("items") or []:
            values = ", ".join(f"{k}={v}" for k, v in (cred.get("values") or {}).items())
            table.add_row(cred["id"], cred.get("name") or "", cred.get("type") or "",
                          values, key=str(cred["id"]))

    def _show(self) -> None:
        c = self.company
        self.headline(Text(f"Company #{c['id']} {c.get('slug')} · {c.get('name') or ''}"))
        self.query_one("#info-pairs", KeyValues).set_pairs([
            ("Name", c.get("name")),
            ("Code (slug)", c.get("slug")),
            ("IČ", c.get("ic")),
            ("DIČ", c.get("dic")),
            ("E-mail", c.get("email")),
            ("Enabled", fmt.yes_no(c.get("enabled"))),
            ("Created", fmt.full_time(c.get("created_at"))),
        ])
