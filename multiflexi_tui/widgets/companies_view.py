"""View 1: the companies (tenants)."""

from __future__ import annotations

from typing import Any

from multiflexi_tui import format as fmt
from multiflexi_tui.connection import DaemonLink
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

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        return await offset_page(link, "company.list", cursor, self.PAGE_SIZE)

    def open(self, rec: Record) -> None:
        self.post_message(Open("company", rec))
