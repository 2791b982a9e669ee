"""`n` / `e` on a company's environment: set a variable (name, value, secret or not).
A secret value is masked while typed and stored encrypted; editing a secret one shows it
empty and keeps it unless a new value is typed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import on
from textual.widget import Widget
from textual.widgets import Checkbox, Input

from multiflexi.errors import InvalidInput
from multiflexi_tui.screens.form import FormScreen
from multiflexi_tui.widgets.company_env import company_ref
from multiflexi_tui.widgets.field_input import FieldInput


class EnvVarScreen(FormScreen):
    """Dismisses with ``{key, value, secret}`` as set (None: cancelled or unchanged)."""

    def __init__(self, company: dict[str, Any], entry: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.company = company
        self.entry = entry

    def title_text(self) -> str:
        where = company_ref(self.company)
        return (f"Set {self.entry['key']} for {where}" if self.entry
                else f"New variable for {where}")

    def inputs(self) -> Iterable[Widget]:
        entry = self.entry or {}
        secret = bool(entry.get("secret"))
        yield FieldInput({"key": "key", "label": "Variable", "type": "string",
                          "required": True, "description": "e.g. ABRAFLEXI_URL"},
                         value=str(entry.get("key") or ""))
        yield FieldInput({"key": "value", "label": "Value", "type": "string",
                          "secret": secret},
                         value="" if secret else str(entry.get("value") or ""),
                         kept=secret)
        yield Checkbox("secret: stored encrypted, shown masked", secret, id="secret",
                       compact=True)

    def on_mount(self) -> None:
        super().on_mount()
        if self.entry:  # the name stays; another name is another variable (n)
            self.query_one("#field-key #control", Input).disabled = True

    def focus_first(self) -> None:
        if self.entry:
            self.query_one("#field-value", FieldInput).focus_control()
        else:
            super().focus_first()

    @on(Checkbox.Changed, "#secret")
    def _secret_toggled(self, event: Checkbox.Changed) -> None:
        self.query_one("#field-value #control", Input).password = event.value

    async def submit(self) -> Any:
        key = self.query_one("#field-key", FieldInput).value.strip()
        value = self.query_one("#field-value", FieldInput)
        secret = self.query_one("#secret", Checkbox).value
        if value.kept and not value.changed:
            if secret:
                return None  # nothing changed: the stored secret stays
            raise InvalidInput("value: type it again (the stored one is secret)",
                               {"field": "params.value"})
        params = {"company": company_ref(self.company), "key": key, "value": value.value,
                  "secret": secret}
        await self.link.call_with("company.env.set", params)
        return {"key": key, "value": "" if secret else value.value, "secret": secret}
