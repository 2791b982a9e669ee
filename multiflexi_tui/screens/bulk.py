"""`b` on marked templates: run, enable, disable or set a configuration value for all of
them at once (``runtemplate.bulk``).

`ctrl+s` first asks the daemon for a dry run and shows its diff — per template, each
field's old and new value; `ctrl+s` again applies exactly that, all or nothing. Changing
the operation or a value asks for a new dry run first."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import on
from textual.widget import Widget
from textual.widgets import Button, Input, Select, Static

from multiflexi.secrecy import looks_secret
from multiflexi_tui.screens.form import FormScreen
from multiflexi_tui.widgets.field_input import FieldInput

OPERATIONS = {
    "run": "run now",
    "enable": "enable",
    "disable": "disable",
    "set-config": "set a configuration value",
}


def changed(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The templates the operation changes (the daemon lists every selected one)."""
    return [c for c in reply.get("changes") or [] if c.get("diff")]


def diff_text(reply: dict[str, Any]) -> Text:
    """The daemon's dry run as the admin reads it: one block per template."""
    changes = reply.get("changes") or []
    moved = changed(reply)
    if not moved:
        return Text("Nothing would change.", style="yellow")
    of = f" of {len(changes)}" if len(moved) < len(changes) else ""
    text = Text(f"{len(moved)}{of} run template(s) would change:", style="bold")
    for change in changes:
        text.append(f"\n#{change.get('id')} {change.get('name')} ({change.get('company')})",
                    style="bold")
        if not change.get("diff"):
            text.append(" unchanged", style="dim")
        for d in change.get("diff") or []:
            text.append(f"\n  {d.get('field')}: ")
            text.append(_shown(d.get("old")), style="red")
            text.append(" → ")
            text.append(_shown(d.get("new")), style="green")
    return text


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class BulkScreen(FormScreen):
    """Dismisses with the daemon's answer and ``op`` (None: cancelled)."""

    SAVE = "Preview"

    DEFAULT_CSS = """
    BulkScreen #diff { height: auto; margin-top: 1; }
    """

    def __init__(self, targets: list[dict[str, Any]]) -> None:
        super().__init__()
        self.targets = targets
        self.dry_run: dict[str, Any] | None = None  # the diff shown, what ctrl+s applies

    def title_text(self) -> str:
        names = ", ".join(str(t.get("name") or f"#{t['id']}") for t in self.targets[:4])
        more = f" and {len(self.targets) - 4} more" if len(self.targets) > 4 else ""
        return f"Change {len(self.targets)} marked run template(s): {names}{more}"

    def inputs(self) -> Iterable[Widget]:
        yield FieldInput({"key": "op", "label": "Operation", "type": "set", "required": True,
                          "options": OPERATIONS}, value="run")
        yield FieldInput({"key": "key", "label": "Variable", "type": "string",
                          "required": True, "description": "the configuration key to set"},
                         path="values.key")
        yield FieldInput({"key": "value", "label": "Value", "type": "string",
                          "description": "checked against each application's field"},
                         path="values.config")
        yield Static("", id="diff")

    def on_mount(self) -> None:
        super().on_mount()
        self._show_inputs()

    @property
    def op(self) -> str:
        return self.query_one("#field-op", FieldInput).value

    def _show_inputs(self) -> None:
        for key in ("key", "value"):
            self.query_one(f"#field-{key}", FieldInput).display = self.op == "set-config"

    def request(self, dry_run: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"op": self.op, "dry_run": dry_run, "via": "tui",
                                  "selection": {"ids": [t["id"] for t in self.targets]}}
        if self.op == "set-config":
            key = self.query_one("#field-key", FieldInput).value.strip()
            params["values"] = {"config": {key: self.query_one("#field-value",
                                                               FieldInput).value}}
        else:
            params["values"] = {}
        return params

    @on(Select.Changed)
    @on(Input.Changed)
    def _changed(self, event: Select.Changed | Input.Changed) -> None:
        """Another operation or value: the diff shown no longer says what would happen."""
        self._show_inputs()
        self._forget_diff()
        key = self.query_one("#field-key", FieldInput).value.strip()
        self.query_one("#field-value #control", Input).password = looks_secret(key)

    def _forget_diff(self) -> None:
        self.dry_run = None
        self.query_one("#diff", Static).update("")
        self.query_one("#save", Button).label = "Preview (^s)"

    async def submit(self) -> Any:
        if self.dry_run is None:
            reply = await self.link.call_with("runtemplate.bulk", self.request(True))
            self.query_one("#diff", Static).update(diff_text(reply))
            if not changed(reply):
                self.form_error("Nothing to apply.")
                return None
            self.dry_run = reply
            self.query_one("#save", Button).label = "Apply (^s)"
            self.form_error(Text("This is the daemon's dry run: ctrl+s applies it to all of "
                                 "them, or to none.", style="bold"))
            return None
        return {**await self.link.call_with("runtemplate.bulk", self.request(False)),
                "op": self.op}

    def saved(self, result: Any) -> None:
        if result is not None:  # applied; a dry run keeps the dialog open
            self.dismiss(result)
