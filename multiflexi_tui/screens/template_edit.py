"""`e` on a run template: change its schedule (with the next due times), executor,
timeout, configuration (the wizard's checked inputs, from the application's fields),
credentials, tags and note.

Only what was changed is sent (``runtemplate.update``). A configuration value equal to
the application's default is not stored, so the template follows the application there;
a stored secret is shown empty and kept unless a new value is typed."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Static, TabbedContent, TabPane

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import validation
from multiflexi_tui.screens.form import Form
from multiflexi_tui.widgets.connection_bar import ConnectionBar
from multiflexi_tui.widgets.credential_choice import CredentialChoice
from multiflexi_tui.widgets.field_input import FieldInput, LabeledRow
from multiflexi_tui.widgets.schedule_fields import ScheduleFields

TABS = ("schedule", "config", "credentials", "notes")
# where runtemplate.env says a value comes from, when it is not the company's environment
_OWN_SOURCES = ("app default", "run template", "one-off override", "multiflexi")


def tags_of(text: str) -> list[str]:
    """``"bank, nightly"`` → ``["bank", "nightly"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


class TemplateEditScreen(Form, Screen[dict[str, Any] | None]):
    """Dismisses with the saved template (None when cancelled or nothing changed)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("ctrl+s", "save", "Save", id="save"),
        Binding("ctrl+n", "next_tab", "Next tab", id="next-tab"),
        Binding("ctrl+p", "previous_tab", "Previous tab", id="previous-tab"),
    ]

    DEFAULT_CSS = """
    TemplateEditScreen > #edit-title { height: 1; padding: 0 1; background: $boost;
                                       text-style: bold; }
    TemplateEditScreen > TabbedContent { height: 1fr; }
    TemplateEditScreen TabPane { padding: 0 1; }
    TemplateEditScreen #schedule LabeledRow > Horizontal { margin-top: 0; }
    TemplateEditScreen #schedule ScheduleFields { margin-top: 0; }
    TemplateEditScreen .hint { color: $text-muted; height: auto; }
    TemplateEditScreen #form-error { color: $error; height: auto; padding: 0 1; }
    TemplateEditScreen #edit-buttons { height: 1; align-horizontal: right; }
    TemplateEditScreen #edit-buttons Button { margin-left: 2; }
    """

    def __init__(self, rt: dict[str, Any]) -> None:
        super().__init__()
        self.rt = rt
        self.app_doc: dict[str, Any] = {}
        self.env_covered: set[str] = set()
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield ConnectionBar()
        yield Static(self._title(), id="edit-title")
        with TabbedContent(id="edit-tabs"):
            with TabPane("Schedule", id="schedule"), VerticalScroll():
                yield LabeledRow("Name", Input(id="name", compact=True), "name")
                yield ScheduleFields(timeout=True)
            with TabPane("Configuration", id="config"):
                yield VerticalScroll(Static("loading…", classes="hint"), id="config-fields")
            with TabPane("Credentials", id="credentials"):
                yield CredentialChoice()
            with TabPane("Tags & note", id="notes"), VerticalScroll():
                yield FieldInput({"key": "tags", "label": "Tags", "type": "string",
                                  "description": "comma-separated; lists filter on them "
                                                 "(e.g. bank, nightly)"},
                                 value=", ".join(self.rt.get("tags") or []), id="rt-tags")
                yield FieldInput({"key": "note", "label": "Note", "type": "string",
                                  "description": "for the admins: why it exists, whom to ask"},
                                 value=str(self.rt.get("note") or ""), id="rt-note")
        yield Static("", id="form-error")
        with Horizontal(id="edit-buttons"):
            yield Button("Save (^s)", variant="primary", id="save", compact=True)
            yield Button("Cancel (esc)", id="cancel", compact=True)
        yield Footer(compact=True)

    def _title(self) -> Text:
        rt = self.rt
        return Text(f"Edit run template #{rt['id']} {rt.get('name') or ''} · "
                    f"{rt.get('app') or '?'} · {rt.get('company') or '?'}")

    @property
    def schedule(self) -> ScheduleFields:
        return self.query_one(ScheduleFields)

    @property
    def choice(self) -> CredentialChoice:
        return self.query_one(CredentialChoice)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._load()

    # --- loading ----------------------------------------------------------------------------

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        link = self.link
        try:
            rt = await link.call("runtemplate.get", id=self.rt["id"])
            app_doc = await link.call("app.get", id=rt["app_id"])
            env = await link.call("runtemplate.env", id=rt["id"])
            creds = await link.call("credential.list", company_id=rt["company_id"])
        except MultiFlexiError as exc:
            self.form_error(exc.message)
            return
        self.rt, self.app_doc = rt, app_doc
        self.query_one("#edit-title", Static).update(self._title())
        self.query_one("#name", Input).value = rt.get("name") or ""
        self.schedule.load(rt)
        self.schedule.set_executors(app_doc, rt.get("executor") or "Native")
        await self._build_config(env)
        self._fill_credentials(creds.get("items") or [])
        for key in ("tags", "note"):
            field = self.query_one(f"#rt-{key}", FieldInput)
            value = rt.get(key)
            field.initial = ", ".join(value or []) if key == "tags" else str(value or "")
            field.set_value(field.initial)
        self.loaded = True
        self.schedule.schedule_preview()

    async def _build_config(self, env: dict[str, Any]) -> None:
        entries = {e["key"]: e for e in env.get("environment") or []}
        stored = set(self.rt.get("config_keys") or [])
        self.env_covered = {key for key, e in entries.items() if any(
            not str(s).startswith("credential") and s not in _OWN_SOURCES
            for s in [e.get("source"), *(e.get("overridden") or [])])}
        fields = list(self.app_doc.get("environment") or [])
        known = {f["key"] for f in fields}
        fields += [{"key": k, "type": "string", "secret": bool(entries.get(k, {}).get("secret")),
                    "description": "not a field of the application"}
                   for k in sorted(stored - known)]
        inputs: list[Any] = [Static(
            "Values of this template. * = required; an application default is not stored "
            "(the template follows the application); secret values are hidden and kept "
            "unless you type a new one." if fields
            else "This application has no configuration fields.", classes="hint")]
        for f in fields:
            key = f["key"]
            value: str | None = None  # the application's default
            kept = False
            if key in stored:
                kept = bool(entries.get(key, {}).get("secret"))
                entry = entries.get(key)
                value = "" if kept or entry is None or entry.get("source") != "run template" \
                    else validation.as_text(f, entry.get("value"))
            inputs.append(FieldInput(f, value=value, path=f"config.{key}", kept=kept))
        box = self.query_one("#config-fields", VerticalScroll)
        await box.remove_children()
        await box.mount_all(inputs)

    def _fill_credentials(self, creds: list[dict[str, Any]]) -> None:
        needs = list(self.app_doc.get("requirements") or [])
        assigned = set(self.rt.get("credentials") or [])
        offered = [c for c in creds
                   if not needs or c.get("type") in needs or c["id"] in assigned]
        self.choice.fill(offered, assigned, needs, str(self.rt.get("company") or "the company"))

    # --- saving -----------------------------------------------------------------------------

    def covered(self) -> set[str]:
        return self.choice.covered() | self.env_covered

    def config_inputs(self) -> list[FieldInput]:
        return list(self.query_one("#config-fields").query(FieldInput))

    def request(self) -> dict[str, Any]:
        """``runtemplate.update``'s parameters: what changed."""
        rt = self.rt
        params: dict[str, Any] = {"id": rt["id"]}
        name = self.query_one("#name", Input).value.strip()
        if name != (rt.get("name") or ""):
            params["name"] = name
        sched = self.schedule
        interv = sched.schedule()["interv"]
        now = {"interv": interv, "cron": self.query_one("#cron", Input).value.strip(),
               "timezone": self.query_one("#timezone", Input).value.strip(),
               "delay": sched.schedule()["delay"], "executor": sched.executor,
               "timeout": sched.timeout}
        was = {"interv": rt.get("interv"), "cron": rt.get("cron") or "",
               "timezone": rt.get("timezone") or "", "delay": rt.get("delay") or 0,
               "executor": rt.get("executor") or "Native", "timeout": rt.get("timeout") or 0}
        params.update({k: v for k, v in now.items() if v != was[k]})
        fields = {f["key"]: f for f in self.app_doc.get("environment") or []}
        stored = set(rt.get("config_keys") or [])
        config: dict[str, str] = {}
        unset: list[str] = []
        for inp in self.config_inputs():
            if not inp.changed:
                continue
            change = "set" if inp.kept else validation.config_change(
                fields.get(inp.key), inp.value, inp.key in stored)
            if change == "set":
                config[inp.key] = inp.value
            elif change == "unset":
                unset.append(inp.key)
        if config:
            params["config"] = config
        if unset:
            params["unset"] = unset
        chosen = self.choice.selected
        if set(chosen) != set(rt.get("credentials") or []):
            params["credentials"] = chosen
        tags = self.query_one("#rt-tags", FieldInput)
        if tags.changed:
            params["tags"] = tags_of(tags.value)
        note = self.query_one("#rt-note", FieldInput)
        if note.changed:
            params["note"] = note.value.strip()
        return params

    async def submit(self) -> Any:
        if not self.loaded:
            return None
        params = self.request()
        if len(params) == 1:
            self.notify(f"run template #{self.rt['id']}: nothing changed")
            return None
        return await self.link.call_with("runtemplate.update", params)

    # --- keys -------------------------------------------------------------------------------

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _step_tab(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active or TABS[0]) + step) % len(TABS)]
        pane = tabs.get_pane(tabs.active)
        inputs = [w for w in pane.query("Input, Select, SelectionList")
                  if w.focusable and w.display]
        if inputs:
            inputs[0].focus()

    def action_next_tab(self) -> None:
        self._step_tab(1)

    def action_previous_tab(self) -> None:
        self._step_tab(-1)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.focus_next()

