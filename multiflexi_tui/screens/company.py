"""A company: its details, run templates, jobs, credentials, environment and audit trail;
`e` changes the company."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import actions
from multiflexi_tui import format as fmt
from multiflexi_tui.screens.detail import DetailScreen
from multiflexi_tui.widgets.audit_log import AuditLog
from multiflexi_tui.widgets.company_env import CompanyEnvPane
from multiflexi_tui.widgets.credentials_pane import CredentialsPane
from multiflexi_tui.widgets.jobs_view import JobsView
from multiflexi_tui.widgets.key_values import KeyValues
from multiflexi_tui.widgets.templates_view import TemplatesView


class CompanyScreen(DetailScreen):
    TABS = (("info", "1 Info"), ("templates", "2 Templates"), ("jobs", "3 Jobs"),
            ("credentials", "4 Credentials"), ("environment", "5 Environment"),
            ("audit", "6 Audit"))

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("1", "tab('info')", "Info", show=False),
        Binding("2", "tab('templates')", "Templates", show=False),
        Binding("3", "tab('jobs')", "Jobs", show=False),
        Binding("4", "tab('credentials')", "Credentials", show=False),
        Binding("5", "tab('environment')", "Environment", show=False),
        Binding("6", "tab('audit')", "Audit", show=False),
        Binding("e", "edit", "Edit company", id="company-edit"),
    ]

    def __init__(self, company: dict[str, Any], tab: str | None = None) -> None:
        super().__init__(tab)
        self.company = company

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "edit":  # hidden from those who may not
            return self.link.may("admin", self.company["id"])
        return True

    def panes(self) -> Iterable[Widget]:
        yield KeyValues(id="info-pairs")
        yield TemplatesView(fixed={"company_id": self.company["id"]}, id="company-templates")
        yield JobsView(fixed={"company_id": self.company["id"]}, id="company-jobs")
        yield CredentialsPane(self.company, id="company-credentials")
        yield CompanyEnvPane(self.company, id="company-env")
        yield AuditLog(company_id=self.company["id"], id="company-audit")

    def on_mount(self) -> None:
        self._show()
        super().on_mount()

    def load(self) -> None:
        self._load()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        self.query_one(AuditLog).load()
        try:
            self.company = await self.link.call("company.get", id=self.company["id"])
        except MultiFlexiError as exc:
            self.notify(exc.message, severity="error")
            return
        self._show()
        self.query_one(CredentialsPane).load()
        self.query_one(CompanyEnvPane).load()

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

    def _saved(self, company: dict[str, Any] | None) -> None:
        if company:
            self.company = company
            self._show()
            self.query_one(AuditLog).load()

    def action_edit(self) -> None:
        actions.edit_company(self, self.company, self._saved)
