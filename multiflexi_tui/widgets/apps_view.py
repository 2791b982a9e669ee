"""View 2: the applications (what can run); `i` imports one from its JSON file."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType

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

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "import", "Import JSON", id="app-import"),
    ]

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        return await offset_page(link, "app.list", cursor, self.PAGE_SIZE)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "import":  # hidden from those who may not
            return link_of(self).may_everywhere("admin")
        return super().check_action(action, parameters)

    def search_extra(self, rec: Record) -> str:
        return " ".join([rec.get("uuid") or "", fmt.text_of(rec.get("description")),
                         " ".join(rec.get("tags") or [])])

    def open(self, rec: Record) -> None:
        self.post_message(Open("app", rec))

    def action_import(self) -> None:
        from multiflexi_tui.screens.import_app import ImportScreen

        def imported(result: dict[str, Any] | None) -> None:
            if not result:
                return
            app = result["app"]
            warnings = result.get("warnings") or []
            self.notify(f"application {fmt.text_of(app.get('name'))} "
                        f"{'imported' if result.get('created') else 'updated'}"
                        + (f"; {len(warnings)} warning(s): " + "; ".join(warnings)
                           if warnings else ""),
                        severity="warning" if warnings else "information")
            self.upsert(app)
            self.call_after_refresh(self.select_key, self.key_of(app))

        self.app.push_screen(ImportScreen(), imported)
