"""`n`: the activation wizard — application → company → name, schedule (with the next due
times) and executor → configuration fields → credentials → create the run template.

The executor is Native unless the application has a container image (``ociimage``): then
Podman and Docker are offered too, as in the original."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import (
    Button,
    ContentSwitcher,
    Footer,
    Input,
    OptionList,
    SelectionList,
    Static,
)
from textual.widgets.option_list import Option

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui import validation
from multiflexi_tui.connection import DaemonLink, LinkState, link_of
from multiflexi_tui.widgets.connection_bar import ConnectionBar
from multiflexi_tui.widgets.field_input import FieldInput, LabeledRow
from multiflexi_tui.widgets.schedule_fields import ScheduleFields

STEPS = ("app", "company", "schedule", "config", "credentials", "review")
TITLES = {
    "app": "application",
    "company": "company",
    "schedule": "name and schedule",
    "config": "configuration",
    "credentials": "credentials",
    "review": "review and create",
}


class WizardScreen(Screen[dict[str, Any] | None]):
    """Dismisses with the created run template (None when abandoned)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("ctrl+n", "next", "Next", id="next"),
        Binding("ctrl+x", "abandon", "Abandon", id="abandon", priority=True),
    ]

    DEFAULT_CSS = """
    WizardScreen > #wizard-title { height: 1; padding: 0 1; background: $boost;
                                   text-style: bold; }
    WizardScreen > ContentSwitcher { height: 1fr; }
    WizardScreen .hint { color: $text-muted; padding: 0 1; height: auto; }
    WizardScreen OptionList, WizardScreen SelectionList { height: 1fr; }
    WizardScreen #step-schedule, WizardScreen #step-config, WizardScreen #step-review {
        padding: 0 1; }
    WizardScreen #wizard-error { color: $error; height: auto; padding: 0 1; }
    WizardScreen #wizard-buttons { height: 1; align-horizontal: right; }
    WizardScreen #wizard-buttons Button { margin-left: 2; }
    """

    def __init__(self, app_id: int | None = None, company_id: int | None = None) -> None:
        super().__init__()
        self.step = "app"
        self.app_id = app_id
        self.company_id = company_id
        self.app_doc: dict[str, Any] = {}
        self.company: dict[str, Any] = {}
        self.apps: list[dict[str, Any]] = []
        self.companies: list[dict[str, Any]] = []
        self.credentials: list[dict[str, Any]] = []
        self.config: dict[str, str] = {}
        self.from_credentials: set[str] = set()
        self._busy = False

    # --- layout -----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield ConnectionBar()
        yield Static("", id="wizard-title")
        with ContentSwitcher(initial="step-app"):
            with Vertical(id="step-app"):
                yield Static("Which application should run? (enter chooses)", classes="hint")
                yield OptionList(id="app-list")
            with Vertical(id="step-company"):
                yield Static("For which company? (enter chooses)", classes="hint")
                yield OptionList(id="company-list")
            with VerticalScroll(id="step-schedule"):
                yield LabeledRow("Name", Input(id="name", compact=True,
                                               placeholder="name of the template"), "name")
                yield ScheduleFields(id="schedule")
            yield VerticalScroll(id="step-config")
            with Vertical(id="step-credentials"):
                yield Static("", classes="hint", id="credential-hint")
                yield SelectionList[int](id="credential-list")
            with VerticalScroll(id="step-review"):
                yield Static("", id="summary")
        yield Static("", id="wizard-error")
        with Horizontal(id="wizard-buttons"):
            yield Button("Back (esc)", id="back", compact=True)
            yield Button("Next (^n)", id="next", variant="primary", compact=True)
            yield Button("Abandon (^x)", id="abandon", compact=True)
        yield Footer(compact=True)

    @property
    def link(self) -> DaemonLink:
        return link_of(self)

    @property
    def schedule(self) -> ScheduleFields:
        return self.query_one(ScheduleFields)

    def on_mount(self) -> None:
        self._goto("app")
        self.link.state_changed.subscribe(self, self._link_state)
        self._load_apps()

    def _link_state(self, state: LinkState) -> None:
        # Opened while the daemon was away: fill the first step once it is back.
        if state.connected and not self.apps:
            self._load_apps()

    # --- navigation -------------------------------------------------------------------------

    def _goto(self, step: str) -> None:
        self.step = step
        self.query_one(ContentSwitcher).current = f"step-{step}"
        number = STEPS.index(step) + 1
        where = ""
        if self.app_doc and step != "app":
            where += f" · {fmt.text_of(self.app_doc.get('name'))}"
        if self.company and step not in ("app", "company"):
            where += f" · {self.company.get('slug')}"
        self.query_one("#wizard-title", Static).update(Text(
            f"New run template — step {number} of {len(STEPS)}: {TITLES[step]}{where}"))
        self.query_one("#next", Button).label = "Create (^n)" if step == "review" else "Next (^n)"
        self._error("")
        focus = {"app": "#app-list", "company": "#company-list", "schedule": "#name",
                 "credentials": "#credential-list"}.get(step)
        if focus:
            self.query_one(focus).focus()
        elif step == "config":
            fields = list(self.query(FieldInput))
            if fields:
                fields[0].focus_control()
            else:
                self.query_one("#next", Button).focus()
        elif step == "review":
            self.query_one("#next", Button).focus()

    def _error(self, message: str) -> None:
        self.query_one("#wizard-error", Static).update(Text(message))

    def action_back(self) -> None:
        index = STEPS.index(self.step)
        if index == 0:
            self.dismiss(None)
        else:
            self._goto(STEPS[index - 1])

    def action_abandon(self) -> None:
        self.dismiss(None)

    def action_next(self) -> None:
        if not self._busy:
            self._advance()

    @on(Button.Pressed)
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        {"back": self.action_back, "next": self.action_next,
         "abandon": self.action_abandon}[event.button.id or "next"]()

    @on(Input.Submitted)
    def _input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_next()

    @on(OptionList.OptionSelected)
    def _option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.action_next()

    @work(exclusive=True, group="advance", exit_on_error=False)
    async def _advance(self) -> None:
        self._busy = True
        try:
            step = self.step
            nxt = await getattr(self, f"_leave_{step}")()
            if nxt:
                self._goto(nxt)
        except MultiFlexiError as exc:
            self._error(exc.message)
        finally:
            self._busy = False

    # --- step 1: application ----------------------------------------------------------------

    @work(exclusive=True, group="load-apps", exit_on_error=False)
    async def _load_apps(self) -> None:
        try:
            self.apps = await self.link.all_pages("app.list")
        except MultiFlexiError as exc:
            self._error(exc.message)
            return
        self._fill(self.query_one("#app-list", OptionList), [
            (a["id"], Text.assemble((fmt.text_of(a.get("name")), "bold"),
                                    f"  {a.get('ociimage') or a.get('executable') or ''}"))
            for a in self.apps if a.get("enabled", True)], self.app_id)

    @staticmethod
    def _fill(options: OptionList, rows: list[tuple[int, Text]], chosen: int | None) -> None:
        options.clear_options()
        options.add_options([Option(label, id=str(key)) for key, label in rows])
        if rows:
            options.highlighted = 0
        if chosen is not None:
            for index, (key, _label) in enumerate(rows):
                if key == chosen:
                    options.highlighted = index

    @staticmethod
    def _picked(options: OptionList) -> int | None:
        option = options.highlighted_option
        return int(option.id) if option is not None and option.id else None

    async def _leave_app(self) -> str | None:
        app_id = self._picked(self.query_one("#app-list", OptionList))
        if app_id is None:
            self._error("choose an application")
            return None
        if app_id != self.app_doc.get("id"):
            self.app_doc = await self.link.call("app.get", id=app_id)
            self._build_fields()
            self.schedule.set_executors(self.app_doc)
            self.query_one("#name", Input).value = fmt.text_of(self.app_doc.get("name"))
        if not self.companies:
            self.companies = await self.link.all_pages("company.list")
            self._fill(self.query_one("#company-list", OptionList), [
                (c["id"], Text.assemble((c.get("slug") or "", "bold"), f"  {c.get('name')}"))
                for c in self.companies], self.company_id)
        return "company"

    # --- step 2: company --------------------------------------------------------------------

    async def _leave_company(self) -> str | None:
        company_id = self._picked(self.query_one("#company-list", OptionList))
        if company_id is None:
            self._error("choose a company")
            return None
        if company_id != self.company.get("id"):
            self.company = next(c for c in self.companies if c["id"] == company_id)
            reply = await self.link.call("credential.list", company_id=company_id)
            self.credentials = list(reply.get("items") or [])
            self._fill_credentials()
        self.schedule.schedule_preview()
        return "schedule"

    # --- step 3: name and schedule ----------------------------------------------------------

    async def _leave_schedule(self) -> str | None:
        if not self.query_one("#name", Input).value.strip():
            self._error("the template needs a name")
            self.query_one("#name", Input).focus()
            return None
        if not await self.schedule.fetch_preview():
            self._error(f"schedule: {self.schedule.preview_error}")
            return None
        return "config"

    # --- step 4: configuration --------------------------------------------------------------

    def _build_fields(self) -> None:
        box = self.query_one("#step-config", VerticalScroll)
        box.remove_children()
        fields = self.app_doc.get("environment") or []
        widgets: list[Any] = [Static(
            "Values for this template. * = required; defaults are filled in; secret values "
            "are hidden." if fields else "This application has no configuration fields.",
            classes="hint")]
        widgets += [FieldInput(f) for f in fields]
        box.mount_all(widgets)

    def _covered_by_credentials(self, chosen: list[int] | None = None) -> set[str]:
        keys: set[str] = set()
        for cred in self.credentials:
            if chosen is None or cred["id"] in chosen:
                keys |= set((cred.get("values") or {}).keys())
        return keys

    async def _leave_config(self) -> str | None:
        covered = self._covered_by_credentials()
        bad = [f for f in self.query(FieldInput) if f.check(covered) is not None]
        if bad:
            self._error(f"{len(bad)} field(s) need attention: "
                        + ", ".join(f.key for f in bad))
            bad[0].focus_control()
            bad[0].scroll_visible()
            return None
        fields = self.app_doc.get("environment") or []
        values = {f.key: f.value for f in self.query(FieldInput)}
        self.config = validation.config_to_send(fields, values)
        self.from_credentials = {f["key"] for f in fields
                                 if validation.missing(f, values.get(f["key"], ""))}
        self._credential_hint()
        return "credentials"

    # --- step 5: credentials ----------------------------------------------------------------

    def _fill_credentials(self) -> None:
        options = self.query_one("#credential-list", SelectionList)
        options.clear_options()
        needs = set(self.app_doc.get("requirements") or [])
        by_type: dict[str, list[dict[str, Any]]] = {}
        for cred in self.credentials:
            by_type.setdefault(cred.get("type") or "?", []).append(cred)
        for cred in self.credentials:
            ctype = cred.get("type") or "?"
            preselect = ctype in needs and len(by_type[ctype]) == 1
            keys = ", ".join((cred.get("values") or {}).keys())
            options.add_option((f"{cred.get('name')} ({ctype}): {keys}", cred["id"], preselect))
        if self.credentials:
            options.highlighted = 0

    def _credential_hint(self) -> None:
        needs = self.app_doc.get("requirements") or []
        text = Text()
        if not self.credentials:
            text.append(f"{self.company.get('slug')} has no credentials.")
        else:
            text.append("space chooses; ^n continues.")
        if needs:
            text.append(f" The application needs: {', '.join(needs)}.")
        if self.from_credentials:
            text.append(" Must provide: " + ", ".join(sorted(self.from_credentials)) + ".",
                        style="bold")
        self.query_one("#credential-hint", Static).update(text)

    async def _leave_credentials(self) -> str | None:
        chosen = list(self.query_one("#credential-list", SelectionList).selected)
        lacking = self.from_credentials - self._covered_by_credentials(chosen)
        if lacking:
            self._error("required, and no chosen credential provides it: "
                        + ", ".join(sorted(lacking)) + " (choose one, or go back and fill it in)")
            return None
        self._summarize(chosen)
        return "review"

    # --- step 6: review and create ----------------------------------------------------------

    def request(self) -> dict[str, Any]:
        chosen = list(self.query_one("#credential-list", SelectionList).selected)
        return {
            "app_id": self.app_doc["id"],
            "company_id": self.company["id"],
            "name": self.query_one("#name", Input).value.strip(),
            **self.schedule.schedule(),
            "executor": self.schedule.executor,
            "config": dict(self.config),
            "credentials": chosen,
        }

    def _summarize(self, chosen: list[int]) -> None:
        req = self.request()
        secret = {f["key"] for f in self.app_doc.get("environment") or [] if f.get("secret")}
        text = Text()

        def row(label: str, value: str) -> None:
            text.append(f"{label:<14}", style="bold")
            text.append(f"{value}\n")

        row("Application", f"{fmt.text_of(self.app_doc.get('name'))} (#{req['app_id']})")
        row("Company", f"{self.company.get('slug')} — {self.company.get('name')}")
        row("Name", req["name"])
        row("Schedule", fmt.schedule_text(req) + (f", {req['timezone']}"
                                                  if req.get("timezone") else "")
            + (f", +{req['delay']} s" if req.get("delay") else ""))
        row("Next due", ", ".join(fmt.due_text(d) for d in self.schedule.preview[:3])
            or "never (by hand only)")
        image = self.app_doc.get("ociimage")
        row("Executor", req["executor"] + (f" ({image})" if req["executor"] != "Native"
                                           else "" if image
                                           else " (the application has no container image)"))
        config = ", ".join(f"{k}={'********' if k in secret else v}"
                           for k, v in req["config"].items())
        row("Configuration", config or "the application's defaults")
        names = [f"{c.get('name')} ({c.get('type')})" for c in self.credentials
                 if c["id"] in chosen]
        row("Credentials", ", ".join(names) or "none")
        text.append("\nCreate it with ^n (or the Create button).", style="dim")
        self.query_one("#summary", Static).update(text)

    async def _leave_review(self) -> str | None:
        rt = await self.link.call_with("runtemplate.create", self.request())
        self.dismiss(rt)
        return None
