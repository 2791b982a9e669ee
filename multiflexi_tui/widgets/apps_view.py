"""View 2: the applications (what can run)."""

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


class AppsView(ResourceView):
    NOUN = "applications"
    COLUMNS = (
        Column("id", "ID", lambda r: r["id"], width=4),
        Column("name", "Name", lambda r: fmt.text_of(r.get("name"))),
        Column("version", "Version", lambda r: r.get("version") or ""),
        Column("executable", "Runs", lambda r: r.get("ociimage") or r.get("executable") or ""),
        Column("requirements", "Needs", lambda r: ", ".join(r.get("requirements") or [])),
        Column("enabled", "On", lambda r: fmt.yes_no(r.get("enabled")),
               sort=lambda r: not r.get("enabled")),
    )

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        return await offset_page(link, "app.list", cursor, self.PAGE_SIZE)

    def search_extra(self, rec: Record) -> str:
        return " ".join([rec.get("uuid") or "", fmt.text_of(rec.get("description")),
                         " ".join(rec.get("tags") or [])])

    def open(self, rec: Record) -> None:
        self.post_message(Open("app", rec))
