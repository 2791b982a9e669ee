"""A template's Actions tab: its configured actions (its own, then its company's), the
recent deliveries, and keys to add (a form built from the module's keys), remove, test
an action and retry a failed delivery. The daemon is asked in workers; what it refuses
is shown, never lost."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Static

from multiflexi.errors import MultiFlexiError
from multiflexi.states import ACTION_RUN_FINAL, ACTION_STREAK_TRIGGERS
from multiflexi_tui.connection import link_of
from multiflexi_tui.widgets.action_runs import RUN_STYLES, run_for, run_state
from multiflexi_tui.widgets.list_table import ListTable

# A retried delivery is followed until it is done (the daemon pushes no news of action
# runs): its row is read again once a second, for up to this many seconds.
FOLLOW_SECONDS = 120


def config_text(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in config.items())


class ActionsPane(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add", "Add action", id="action-add"),
        Binding("x", "remove", "Remove", id="action-remove"),
        Binding("T", "test", "Test", id="action-test"),
        Binding("R", "retry", "Retry delivery", id="action-retry"),
    ]

    DEFAULT_CSS = """
    ActionsPane { height: 1fr; }
    ActionsPane > .title { height: 1; padding: 0 1; text-style: bold; }
    ActionsPane > #action-table { height: 1fr; min-height: 4; }
    ActionsPane > #delivery-table { height: 1fr; min-height: 4; }
    ActionsPane > #action-note { height: auto; padding: 0 1; color: $text-muted; }
    """

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Adding, removing and testing actions is an admin's; retrying an operator's."""
        link = link_of(self)
        if action in ("add", "remove", "test"):
            return link.may("admin", self.company_id)
        if action == "retry":
            return link.may("operator", self.company_id)
        return True

    def __init__(self, rt_id: int, *, company_id: int | None = None,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.rt_id = rt_id
        self.company_id = company_id
        self.actions: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.inherits = True

    def compose(self) -> ComposeResult:
        yield Static("Actions (a add · x remove · T test)", classes="title")
        yield ListTable(id="action-table")
        yield Static("Recent deliveries (R retry a failed one)", classes="title")
        yield ListTable(id="delivery-table", cell_colours_under_cursor=True)
        yield Static("", id="action-note")

    def on_mount(self) -> None:
        actions = self.query_one("#action-table", ListTable)
        for key, label in (("id", "ID"), ("from", "From"), ("on", "On"), ("module", "Module"),
                           ("config", "Config")):
            actions.add_column(label, key=key)
        runs = self.query_one("#delivery-table", ListTable)
        for key, label in (("id", "Run"), ("for", "For"), ("module", "Module"),
                           ("state", "State"), ("result", "Result")):
            runs.add_column(label, key=key)

    def note(self, text: str | Text) -> None:
        self.query_one("#action-note", Static).update(text)

    @work(exclusive=True, group="actions-load", exit_on_error=False)
    async def load(self) -> None:
        link = link_of(self)
        try:
            reply = await link.call("action.list", runtemplate_id=self.rt_id)
            runs = await link.call("action_run.list", runtemplate_id=self.rt_id, limit=20)
        except MultiFlexiError as exc:
            self.note(Text(exc.message, style="red"))
            return
        self.actions, self.runs = reply.get("items") or [], runs.get("items") or []
        self.inherits = reply.get("inherit_actions", True)
        self._show()

    def _show(self) -> None:
        table = self.query_one("#action-table", ListTable)
        table.clear()
        for a in self.actions:
            on = a["trigger"] + (f" ({a['throttle']})" if a["trigger"] in
                                 ACTION_STREAK_TRIGGERS else "")
            table.add_row(a["id"], "company" if a["scope"] == "company" else "template", on,
                          a["module"], config_text(a.get("config") or {}), key=str(a["id"]))
        if not self.actions:
            table.add_row("", "", "", Text("no actions: a adds one", style="dim"), "")
        runs = self.query_one("#delivery-table", ListTable)
        runs.clear()
        for r in self.runs:
            runs.add_row(r["id"], run_for(r), r["module"], run_state(r), _result(r),
                         key=str(r["id"]))
        self._note_runs()

    def _note_runs(self) -> None:
        failed = sum(1 for r in self.runs if r["state"] in ("failed", "gave_up"))
        parts = []
        if failed:
            parts.append(Text(f"{failed} failed deliver{'y' if failed == 1 else 'ies'}",
                              style="bold red"))
        if not self.inherits:
            parts.append(Text("the company's default actions do not apply to this template"))
        self.note(Text(" · ").join(parts) if parts else "")

    @work(group="action-follow", exclusive=True, exit_on_error=False)
    async def follow(self, run_id: int) -> None:
        """A retried delivery's row, read again once a second until it is done: its
        state and result change in place (the cursor stays where it is)."""
        link = link_of(self)
        for _ in range(FOLLOW_SECONDS):
            await asyncio.sleep(1.0)
            try:
                reply = await link.call("action_run.list", runtemplate_id=self.rt_id,
                                        limit=20)
            except MultiFlexiError:
                return
            run = next((r for r in reply.get("items") or [] if r["id"] == run_id), None)
            if run is None:
                return
            self.runs = [run if r["id"] == run_id else r for r in self.runs]
            table = self.query_one("#delivery-table", ListTable)
            if str(run_id) in table.rows:
                table.update_cell(str(run_id), "state", run_state(run))
                table.update_cell(str(run_id), "result", _result(run))
            self._note_runs()
            if run["state"] in ACTION_RUN_FINAL:
                return

    def _current(self, table_id: str, items: list[dict[str, Any]]) -> dict[str, Any] | None:
        table = self.query_one(table_id, ListTable)
        if not items or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((i for i in items if str(i["id"]) == key), None)

    def action_add(self) -> None:
        from multiflexi_tui.screens.action_form import ActionFormScreen

        def added(action: dict[str, Any] | None) -> None:
            if action:
                self.notify(f"action {action['id']} added: {action['module']} on "
                            f"{action['trigger']}")
                self.load()

        self.app.push_screen(ActionFormScreen(self.rt_id), added)

    def action_remove(self) -> None:
        from multiflexi_tui.screens.confirm import ConfirmScreen

        action = self._current("#action-table", self.actions)
        if action is None:
            return
        if action["scope"] == "company":
            self.notify("a company's default action: remove it with `multiflexi-cli company "
                        "action remove`", severity="warning")
            return

        async def remove() -> None:
            try:
                await link_of(self).call("action.remove", id=action["id"])
            except MultiFlexiError as exc:
                self.notify(exc.message, title="Cannot remove", severity="error")
                return
            self.notify(f"action {action['id']} removed")
            self.load()

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_worker(remove(), group="action-remove", exit_on_error=False)

        self.app.push_screen(ConfirmScreen(
            f"Remove action #{action['id']} ({action['module']} on {action['trigger']})?",
            "Its past deliveries stay in the ledger."), confirmed)

    def action_test(self) -> None:
        action = self._current("#action-table", self.actions)
        if action is None:
            return

        async def test() -> None:
            self.note(f"testing action {action['id']} with a sample job…")
            try:
                result = await link_of(self).call("action.test", id=action["id"])
            except MultiFlexiError as exc:
                self.note(Text(exc.message, style="red"))
                return
            word = Text("ok", style="green") if result["ok"] else Text("FAILED",
                                                                       style="bold red")
            self.note(Text.assemble(f"test of action {action['id']} ({result['module']}): ",
                                    word, f": {result['result']}"))

        self.run_worker(test(), group="action-test", exclusive=True, exit_on_error=False)

    def action_retry(self) -> None:
        run = self._current("#delivery-table", self.runs)
        if run is None or run["state"] not in ("failed", "gave_up"):
            self.notify("choose a failed delivery in the lower table", severity="warning")
            return

        async def retry() -> None:
            try:
                await link_of(self).call("action_run.retry", id=run["id"])
            except MultiFlexiError as exc:
                self.notify(exc.message, title="Cannot retry", severity="error")
                return
            self.notify(f"delivery #{run['id']} is due again")
            self.load()
            self.follow(run["id"])

        self.run_worker(retry(), group="action-retry", exit_on_error=False)


def _result(run: dict[str, Any]) -> Text:
    """A delivery's result, red when it failed."""
    failed = run["state"] in ("failed", "gave_up")
    return Text(run.get("result") or "", style=RUN_STYLES.get(run["state"], "") if failed
                else "")
