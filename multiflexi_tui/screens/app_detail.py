"""An application: what it runs, its configuration fields, exit codes, its templates."""

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
from multiflexi_tui.widgets.key_values import KeyValues
from multiflexi_tui.widgets.templates_view import TemplatesView


class AppScreen(DetailScreen):
    TABS = (("info", "1 Info"), ("fields", "2 Configuration"), ("exit-codes", "3 Exit codes"),
            ("templates", "4 Templates"))

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("1", "tab('info')", "Info", show=False),
        Binding("2", "tab('fields')", "Configuration", show=False),
        Binding("3", "tab('exit-codes')", "Exit codes", show=False),
        Binding("4", "tab('templates')", "Templates", show=False),
    ]

    def __init__(self, app_rec: dict[str, Any], tab: str | None = None) -> None:
        super().__init__(tab)
        self.app_rec = app_rec

    def panes(self) -> Iterable[Widget]:
        yield KeyValues(id="info-pairs")
        yield DataTable[object](id="field-table", cursor_type="row", zebra_stripes=True)
        yield DataTable[object](id="exit-table", cursor_type="row", zebra_stripes=True)
        yield TemplatesView(fixed={"app_id": self.app_rec["id"]}, id="app-templates")

    def on_mount(self) -> None:
        fields = self.query_one("#field-table", DataTable)
        for key, label in (("key", "Variable"), ("type", "Type"), ("required", "Req"),
                           ("default", "Default"), ("description", "Description")):
            fields.add_column(label, key=key)
        codes = self.query_one("#exit-table", DataTable)
        for key, label in (("code", "Code"), ("severity", "Severity"), ("retry", "Retry"),
                           ("description", "Meaning")):
            codes.add_column(label, key=key)
        self._show()
        super().on_mount()

    def load(self) -> None:
        self._load()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        try:
            self.app_rec = await self.link.call("app.get", id=self.app_rec["id"])
        except MultiFlexiError as exc:
            self.notify(exc.message, severity="error")
            return
        self._show()

    def _show(self) -> None:
        a = self.app_rec
        self.headline(Text(f"Application #{a['id']} {fmt.text_of(a.get('name'))}"
                           + (f" {a['version']}" if a.get("version") else "")))
        self.query_one("#info-pairs", KeyValues).set_pairs([
            ("Name", fmt.text_of(a.get("name"))),
            ("Description", fmt.text_of(a.get("description"))),
            ("UUID", a.get("uuid")),
            ("Executable", a.get("executable")),
            ("Arguments", a.get("cmdparams")),
            ("Container image", a.get("ociimage")),
            ("Version", a.get("version")),
            ("Needs credentials", ", ".join(a.get("requirements") or []) or None),
            ("Tags", ", ".join(a.get("tags") or []) or None),
            ("Homepage", a.get("homepage")),
            ("Enabled", fmt.yes_no(a.get("enabled"))),
            ("Artifacts", ", ".join(x.get("name") or x.get("path") or ""
                                    for x in a.get("artifacts") or []) or None),
        ])
        fields = self.query_one("#field-table", DataTable)
        fields.clear()
        for f in a.get("environment") or []:
            default = f.get("default")
            shown = "********" if f.get("secret") and default else (
                "" if default is None else str(default))
            fields.add_row(f["key"], f.get("type") or "", "yes" if f.get("required") else "",
                           shown, fmt.text_of(f.get("description")), key=f["key"])
        codes = self.query_one("#exit-table", DataTable)
        codes.clear()
        for e in a.get("exit_codes") or []:
            codes.add_row(e.get("code"), e.get("severity") or "", "yes" if e.get("retry") else "",
                          fmt.text_of(e.get("description")), key=str(e.get("code")))
