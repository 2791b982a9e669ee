"""View 1: the companies (tenants); `n` adds one, `e` changes the one under the cursor."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from multiflexi_tui import actions
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import DaemonLink, link_of
from multiflexi_tui.messages import Open
from multiflexi_tui.widgets.resource_view import (
    Column,
    Page,
    Record,
    ResourceView,
    offset_page,
)


class CompaniesView(ResourceView):
    NOUN = "companies"
    COLUMNS = (
        Column("id", "ID", lambda r: r["id"], width=4),
        Column("slug", "Code", lambda r: r.get("slug") or ""),
        Column("name", "Name", lambda r: r.get("name") or ""),
        Column("ic", "IČ", lambda r: r.get("ic") or ""),
        Column("email", "E-mail", lambda r: r.get("email") or ""),
        Column("enabled", "On", lambda r: fmt.yes_no(r.get("enabled")),
               sort=lambda r: not r.get("enabled")),
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New", id="company-new"),
        Binding("e", "edit", "Edit", id="company-edit"),
    ]

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        return await offset_page(link, "company.list", cursor, self.PAGE_SIZE)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "new":  # hidden from those who may not
            return link_of(self).may_everywhere("admin")
        if action == "edit":
            rec = self.current()
            return rec is not None and link_of(self).may("admin", rec["id"])
        return super().check_action(action, parameters)

    def open(self, rec: Record) -> None:
        self.post_message(Open("company", rec))

    def _saved(self, company: Record | None) -> None:
        if company:
            self.upsert(company)
            self.call_after_refresh(self.select_key, self.key_of(company))

    def action_new(self) -> None:
        actions.edit_company(self, None, self._saved)

    def action_edit(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.edit_company(self, rec, self._saved)
