"""Add an action to a template: trigger, throttle, module, then one input per key of the
module (from ``action.modules``): required marked, secret ones masked while typed, a
repeatable key with room for two values. What the daemon refuses is shown next to the
field, and what was typed stays."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Select, Static

from multiflexi.errors import InvalidInput, MultiFlexiError
from multiflexi.states import ACTION_STREAK_TRIGGERS, ACTION_THROTTLES, ACTION_TRIGGERS
from multiflexi_tui.connection import link_of


class ActionFormScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the new action (None when cancelled)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel"),
        Binding("ctrl+s", "save", "Add", show=False),
    ]

    DEFAULT_CSS = """
    ActionFormScreen { align: center middle; }
    ActionFormScreen > Vertical { width: 84; max-width: 100%; height: 90%;
                                  border: thick $accent; background: $surface; padding: 0 1; }
    ActionFormScreen .question { text-style: bold; }
    ActionFormScreen Select { width: 100%; }
    ActionFormScreen #keys { height: 1fr; }
    ActionFormScreen .label { height: 1; margin-top: 1; }
    ActionFormScreen .hint { color: $text-muted; height: auto; }
    ActionFormScreen .error { color: $error; height: auto; }
    ActionFormScreen #form-error { color: $error; height: auto; }
    ActionFormScreen Horizontal { height: auto; align-horizontal: right; }
    ActionFormScreen Button { margin-left: 2; }
    """

    def __init__(self, rt_id: int) -> None:
        super().__init__()
        self.rt_id = rt_id
        self.modules: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(f"Add an action to template #{self.rt_id}"), classes="question")
            yield Select([(t, t) for t in ACTION_TRIGGERS], value="failure", id="trigger",
                         allow_blank=False, compact=True, prompt="on")
            yield Select([(f"throttle: {t}", t) for t in ACTION_THROTTLES], value="first",
                         id="throttle", allow_blank=False, compact=True)
            yield Select([], id="module", prompt="module", compact=True)
            yield VerticalScroll(id="keys")
            yield Static("", id="form-error")
            with Horizontal():
                yield Button("Add (ctrl+s)", variant="primary", id="save")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self._load_modules()

    @work(exclusive=True, group="modules", exit_on_error=False)
    async def _load_modules(self) -> None:
        try:
            reply = await link_of(self).call("action.modules")
        except MultiFlexiError as exc:
            self._error(exc.message)
            return
        self.modules = {m["name"]: m for m in reply.get("items") or []}
        select = self.query_one("#module", Select)
        select.set_options([(f"{m['name']} — {m['description']}", m["name"])
                            for m in self.modules.values()])
        select.focus()

    @on(Select.Changed, "#module")
    async def _module_chosen(self, event: Select.Changed) -> None:
        keys = self.query_one("#keys", VerticalScroll)
        await keys.remove_children()
        module = self.modules.get(str(event.value))
        if module is None:
            return
        widgets: list[Any] = []
        for k in module["keys"]:
            label = Text(k["name"], style="bold")
            if k["required"]:
                label.append(" *", style="bold red")
            label.append(f"  {k['type']}", style="dim")
            if k["secret"]:
                label.append("  secret", style="italic yellow")
            widgets.append(Static(label, classes="label"))
            hint = k["description"] + (f" (default {k['default']})"
                                       if k.get("default") is not None else "")
            widgets.append(Static(Text(hint), classes="hint"))
            for i in range(2 if k["repeatable"] else 1):
                widgets.append(Input(password=bool(k["secret"]), compact=True,
                                     id=f"key-{k['name']}-{i}",
                                     placeholder="another (optional)" if i else ""))
            widgets.append(Static("", classes="error", id=f"error-{k['name']}"))
        await keys.mount_all(widgets)

    def _values(self) -> dict[str, Any]:
        module = self.modules.get(str(self.query_one("#module", Select).value))
        out: dict[str, Any] = {}
        for k in (module or {}).get("keys", []):
            given = [w.value for w in self.query(Input)
                     if (w.id or "").startswith(f"key-{k['name']}-") and w.value.strip()]
            if given:
                out[k["name"]] = given if k["repeatable"] else given[0]
        return out

    def _error(self, message: str) -> None:
        self.query_one("#form-error", Static).update(Text(message))

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        module = self.query_one("#module", Select).value
        if module is Select.NULL:
            self._error("choose a module")
            return
        self._save(str(module))

    @work(exclusive=True, group="save", exit_on_error=False)
    async def _save(self, module: str) -> None:
        for error in self.query(".error"):
            if isinstance(error, Static):
                error.update("")
        self._error("")
        trigger = str(self.query_one("#trigger", Select).value)
        throttle = str(self.query_one("#throttle", Select).value)
        params: dict[str, Any] = {"runtemplate_id": self.rt_id, "module": module,
                                  "trigger": trigger, "config": self._values()}
        if trigger in ACTION_STREAK_TRIGGERS:
            params["throttle"] = throttle
        try:
            action = await link_of(self).call_with("action.add", params)
        except InvalidInput as exc:
            field = str(exc.data.get("field") or "")
            key = field.removeprefix("params.config.")
            targets = self.query(f"#error-{key}") if key and key != field else None
            if targets:
                message = exc.message.split(": ", 1)[-1]
                targets.first(Static).update(Text(message))
            self._error(exc.message)
            return
        except MultiFlexiError as exc:
            self._error(exc.message)
            return
        self.dismiss(action)
