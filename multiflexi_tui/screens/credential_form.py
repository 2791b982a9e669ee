"""`n` / `e` on a company's credentials: the inputs come from the credential type's fields
(``credential_type.list``): required marked, secret ones masked (and, when editing, kept
unless a new value is typed), values checked by their type before the daemon checks
them again."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.containers import VerticalGroup
from textual.widget import Widget
from textual.widgets import Select, Static

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import validation
from multiflexi_tui.screens.form import FormScreen
from multiflexi_tui.widgets.field_input import FieldInput

MASK = "********"


def value_field(f: dict[str, Any]) -> dict[str, Any]:
    """A credential type's field as a form input (its values are checked as ``check``)."""
    return {"key": f["keyword"], "type": f.get("check") or "string",
            "required": f.get("required"), "secret": f.get("secret"),
            "description": f.get("name"), "hint": f.get("description"),
            "default": f.get("default"), "options": f.get("options")}


class CredentialFormScreen(FormScreen):
    """``cred`` None: a new credential of ``company``. Dismisses with the daemon's
    credential (secrets masked) or None."""

    def __init__(self, company: dict[str, Any], cred: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.company = company
        self.cred = cred
        self.types: dict[str, dict[str, Any]] = {}

    def title_text(self) -> str:
        c = self.cred
        where = self.company.get("slug") or f"#{self.company['id']}"
        if c is None:
            return f"New credential of {where}"
        return f"Credential #{c['id']} {c.get('name')} ({c.get('type')}) of {where}"

    def inputs(self) -> Iterable[Widget]:
        if self.cred is None:
            yield FieldInput({"key": "type", "label": "Type", "type": "set", "required": True,
                              "options": {}})
        yield FieldInput({"key": "name", "label": "Name", "type": "string", "required": True},
                         value=(self.cred or {}).get("name") or "")
        yield Static("loading the credential types…", classes="hint", id="values-hint")
        yield VerticalGroup(id="values")

    def on_mount(self) -> None:
        super().on_mount()
        self._load_types()

    @work(exclusive=True, group="types", exit_on_error=False)
    async def _load_types(self) -> None:
        try:
            reply = await self.link.call("credential_type.list")
        except MultiFlexiError as exc:
            self.form_error(exc.message)
            return
        self.types = {t["code"]: t for t in reply.get("items") or []}
        if self.cred is None:
            select = self.query_one("#field-type #control", Select)
            select.set_options([(f"{t['code']} — {t.get('name') or ''}", code)
                                for code, t in self.types.items()])
            self._hint("choose the type: its fields follow")
        else:
            await self._show_values(str(self.cred.get("type")))

    def _hint(self, text: str) -> None:
        self.query_one("#values-hint", Static).update(Text(text))

    @on(Select.Changed)
    async def _type_chosen(self, event: Select.Changed) -> None:
        if event.select.parent is not None and event.select.parent.id == "field-type":
            await self._show_values("" if event.value is Select.NULL else str(event.value))

    async def _show_values(self, code: str) -> None:
        box = self.query_one("#values", VerticalGroup)
        await box.remove_children()
        ctype = self.types.get(code)
        if ctype is None:
            self._hint(f"unknown credential type {code}" if code else
                       "choose the type: its fields follow")
            return
        stored = (self.cred or {}).get("values") or {}
        inputs = []
        for f in ctype.get("fields") or []:
            field = value_field(f)
            kept = bool(field["secret"]) and bool(stored.get(field["key"]))
            value = None
            if self.cred is not None:
                value = "" if kept else validation.as_text(field, stored.get(field["key"]))
            inputs.append(FieldInput(field, value=value, path=f"values.{field['key']}",
                                     kept=kept))
        self._hint(f"{ctype.get('name') or code}: " + (
            "* = required; secret values are hidden" + (
                " and kept unless you type a new one" if self.cred else "")
            if inputs else "this type has no fields"))
        await box.mount_all(inputs)

    def _values(self) -> list[FieldInput]:
        return list(self.query_one("#values", VerticalGroup).query(FieldInput))

    async def submit(self) -> Any:
        name = self.query_one("#field-name", FieldInput)
        if self.cred is None:
            code = self.query_one("#field-type", FieldInput).value
            values = {f.key: f.value for f in self._values() if f.value != ""}
            return await self.link.call_with("credential.create", {
                "company_id": self.company["id"], "type": code,
                "name": name.value.strip(), "values": values})
        params: dict[str, Any] = {"id": self.cred["id"]}
        if name.changed:
            params["name"] = name.value.strip()
        changed = {f.key: f.value for f in self._values() if f.changed}
        if changed:
            params["values"] = changed
        return await self.link.call_with("credential.update", params)
