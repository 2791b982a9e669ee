"""`n` / `e` on companies: create a company or change one (name, code, IČ, DIČ, e-mail,
enabled)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widget import Widget

from multiflexi_tui.screens.form import FormScreen
from multiflexi_tui.widgets.field_input import FieldInput

FIELDS: list[dict[str, Any]] = [
    {"key": "name", "label": "Name", "type": "string", "required": True},
    {"key": "slug", "label": "Code", "type": "string", "required": True,
     "description": "short unique code: letters, digits, - and _ (e.g. acme)"},
    {"key": "ic", "label": "IČ", "type": "string", "description": "company registration number"},
    {"key": "dic", "label": "DIČ", "type": "string", "description": "VAT number"},
    {"key": "email", "label": "E-mail", "type": "email"},
    {"key": "enabled", "label": "Enabled", "type": "bool", "required": True,
     "description": "a disabled company's templates do not run"},
]


class CompanyFormScreen(FormScreen):
    """``company`` None: a new one. Dismisses with the daemon's company (None: cancelled)."""

    def __init__(self, company: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.company = company

    def title_text(self) -> str:
        c = self.company
        return f"Company #{c['id']} {c.get('slug')}" if c else "New company"

    def inputs(self) -> Iterable[Widget]:
        c = self.company or {"enabled": True}
        for field in FIELDS:
            value = c.get(field["key"])
            text = ("true" if value else "false") if field["type"] == "bool" else (
                "" if value is None else str(value))
            yield FieldInput(field, value=text)

    async def submit(self) -> Any:
        values: dict[str, Any] = {}
        for f in self.fields():
            if self.company is None and not f.value and f.key not in ("name", "slug"):
                continue
            if self.company is not None and not f.changed:
                continue
            values[f.key] = f.value == "true" if f.key == "enabled" else f.value.strip()
        if self.company is None:
            return await self.link.call_with("company.create", values)
        return await self.link.call_with("company.update", {"id": self.company["id"],
                                                             **values})
