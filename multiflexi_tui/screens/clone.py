"""`c`: copy a run template or a credential, to its own company or another one.

The copy of a template is created disabled (it must not run before someone reviewed
it); its credentials are re-pointed to the target company's credential of the same type,
or the daemon refuses and says why. Secrets are copied encrypted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import work
from textual.widget import Widget
from textual.widgets import Select, Static

from multiflexi.errors import MultiFlexiError
from multiflexi_tui.screens.form import FormScreen
from multiflexi_tui.widgets.field_input import FieldInput

NOUNS = {"runtemplate": "run template", "credential": "credential"}


class CloneScreen(FormScreen):
    """Dismisses with the new template's or credential's view (None: cancelled)."""

    SAVE = "Clone"

    def __init__(self, kind: str, rec: dict[str, Any]) -> None:
        super().__init__()
        self.kind = kind
        self.rec = rec

    def title_text(self) -> str:
        return f"Clone {NOUNS[self.kind]} #{self.rec['id']} {self.rec.get('name') or ''}"

    def inputs(self) -> Iterable[Widget]:
        # the companies come from the daemon (those this user is an admin of)
        yield FieldInput({"key": "company", "label": "To company", "type": "set",
                          "required": True, "options": {}})
        yield FieldInput({"key": "name", "label": "Name", "type": "string",
                          "description": "empty: the same name in another company, "
                                         f"'{self.rec.get('name')} (copy)' in its own"})
        if self.kind == "runtemplate":
            yield Static("The copy is created disabled: review it, then enable it (t). "
                         "Its credentials become the target company's of the same type.",
                         classes="hint")

    def on_mount(self) -> None:
        super().on_mount()
        self._load_companies()

    @work(exclusive=True, group="companies", exit_on_error=False)
    async def _load_companies(self) -> None:
        try:
            companies = await self.link.all_pages("company.list")
        except MultiFlexiError as exc:
            self.form_error(exc.message)
            return
        options = {c["slug"]: f"{c['slug']} — {c.get('name') or ''}" for c in companies
                   if self.link.may("admin", c["id"])}
        field = self.query_one("#field-company", FieldInput)
        field.field["options"] = options
        select = field.query_one("#control", Select)
        select.set_options([(label, slug) for slug, label in options.items()])
        if self.rec.get("company") in options:
            select.value = self.rec["company"]

    async def submit(self) -> Any:
        values = {f.key: f.value.strip() for f in self.fields()}
        params: dict[str, Any] = {"id": self.rec["id"]}
        if values["name"]:
            params["name"] = values["name"]
        if values["company"] != self.rec.get("company"):
            params["company"] = values["company"]
        return await self.link.call_with(f"{self.kind}.clone", params)
