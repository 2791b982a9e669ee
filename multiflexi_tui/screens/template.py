"""A run template: schedule and next due times, its environment, its jobs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable

from multiflexi.errors import InvalidInput, MultiFlexiError
from multiflexi_tui import actions
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import link_of
from multiflexi_tui.messages import Open
from multiflexi_tui.screens.detail import DetailScreen
from multiflexi_tui.widgets.actions_pane import ActionsPane
from multiflexi_tui.widgets.audit_log import AuditLog
from multiflexi_tui.widgets.jobs_view import JobsView
from multiflexi_tui.widgets.key_values import KeyValues


class TemplateScreen(DetailScreen):
    TABS = (("info", "1 Info"), ("environment", "2 Environment"), ("jobs", "3 Jobs"),
            ("actions", "4 Actions"), ("audit", "5 Audit"))

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("1", "tab('info')", "Info", show=False),
        Binding("2", "tab('environment')", "Environment", show=False),
        Binding("3", "tab('jobs')", "Jobs", show=False),
        Binding("4", "tab('actions')", "Actions", show=False),
        Binding("5", "tab('audit')", "Audit", show=False),
        Binding("r", "run", "Run now", id="run"),
        Binding("t", "toggle_active", "On/off", id="toggle"),
        Binding("e", "edit", "Edit", id="edit"),
        Binding("c", "clone", "Clone", id="clone"),
    ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("run", "toggle_active"):  # hidden from those who may not
            return link_of(self).may("operator", self.rt.get("company_id"))
        if action in ("edit", "clone"):
            return link_of(self).may("admin", self.rt.get("company_id"))
        return True

    def __init__(self, rt: dict[str, Any], tab: str | None = None) -> None:
        super().__init__(tab)
        self.rt = rt
        self.preview: list[dict[str, Any]] = []
        self.preview_error: str | None = None

    def panes(self) -> Iterable[Widget]:
        yield KeyValues(id="info-pairs")
        yield DataTable[object](id="env-table", cursor_type="row", zebra_stripes=True)
        yield JobsView(fixed={"runtemplate_id": self.rt["id"]}, id="template-jobs")
        yield ActionsPane(self.rt["id"], company_id=self.rt.get("company_id"),
                          id="template-actions")
        yield AuditLog(runtemplate_id=self.rt["id"], id="template-audit")

    def on_mount(self) -> None:
        env = self.query_one("#env-table", DataTable)
        for key, label in (("key", "Variable"), ("source", "From"), ("value", "Value")):
            env.add_column(label, key=key)
        self.link.runtemplate_changed.subscribe(self, self._changed)
        self._show()
        super().on_mount()

    def load(self) -> None:
        self._load()
        self.query_one(ActionsPane).load()
        self.query_one(AuditLog).load()

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self) -> None:
        link = self.link
        try:
            self.rt = await link.call("runtemplate.get", id=self.rt["id"])
        except MultiFlexiError as exc:
            self.notify(exc.message, severity="error")
            return
        self._show()
        try:
            reply = await link.call_with("runtemplate.preview", {
                "id": self.rt["id"], "count": 5, "from": fmt.CLOCK().isoformat()})
            self.preview, self.preview_error = reply.get("due") or [], None
        except InvalidInput as exc:
            self.preview, self.preview_error = [], exc.message
        except MultiFlexiError:
            pass
        self._show()
        try:
            env = await link.call("runtemplate.env", id=self.rt["id"])
        except MultiFlexiError:
            return
        self._show_env(env)

    def _changed(self, rt: dict[str, Any]) -> None:
        if rt.get("id") == self.rt["id"]:
            schedule_moved = any(rt.get(k) != self.rt.get(k)
                                 for k in ("interv", "cron", "timezone", "delay", "active"))
            self.rt = {**self.rt, **rt}
            self._show()
            self.query_one(ActionsPane).load()  # its deliveries may have changed
            if schedule_moved:
                self._load()

    def _show(self) -> None:
        rt = self.rt
        head = Text(f"Template #{rt['id']} {rt.get('name') or ''} · {rt.get('company') or '?'}"
                    f" · {rt.get('app') or '?'} · {fmt.schedule_text(rt)} · ")
        head.append("on" if rt.get("active") else "off",
                    style="green" if rt.get("active") else "yellow")
        self.headline(head)
        due = "\n".join(fmt.due_text(d) for d in self.preview) or (
            self.preview_error or fmt.DASH)
        last = rt.get("last_job")
        pairs: list[tuple[str, Any]] = [
            ("Name", rt.get("name")),
            ("Application", f"{rt.get('app') or '?'} (#{rt.get('app_id')})"),
            ("Company", f"{rt.get('company') or '?'} (#{rt.get('company_id')})"),
            ("Active", fmt.yes_no(rt.get("active")) if rt.get("active")
             or not rt.get("inactive_reason") else
             Text(f"no — {rt['inactive_reason']}", style="bold yellow")),
            ("Schedule", fmt.schedule_text(rt)),
            ("Time zone", rt.get("timezone") or "the daemon's system zone"),
            ("Delay", f"{rt.get('delay') or 0} s after the tick"),
            ("Next run", fmt.full_time(rt.get("next_schedule"))),
            ("Next due times", due),
            ("Last run", fmt.full_time(rt.get("last_schedule"))),
            ("Last job", fmt.last_job_text(last) if last else None),
            ("Last success", fmt.full_time(rt.get("last_success"))),
            ("Deadline", self._deadline_text(rt)),
            ("Succeeded / failed", f"{rt.get('successful_jobs_count') or 0} / "
                                   f"{rt.get('failed_jobs_count') or 0}"),
            ("Executor", rt.get("executor")),
            ("Timeout", f"{rt['timeout']} s" if rt.get("timeout") else "none"),
            ("Retries", f"{rt.get('max_attempts') or 1} attempt(s), backoff "
                        f"{rt.get('retry_backoff') or 'none'}"),
            ("Configured keys", ", ".join(rt.get("config_keys") or []) or None),
            ("Credentials", ", ".join(f"#{c}" for c in rt.get("credentials") or []) or None),
            ("Tags", ", ".join(rt.get("tags") or []) or None),
            ("Note", rt.get("note")),
        ]
        self.query_one("#info-pairs", KeyValues).set_pairs(pairs)

    @staticmethod
    def _deadline_text(rt: dict[str, Any]) -> Text | None:
        """``07:00 · current tick ✘ MISSED 07:00 (by 2024-05-01 07:00:00 +02:00)``."""
        if not rt.get("deadline"):
            return None
        deadline = str(rt["deadline"])
        text = Text(deadline + (" after the due time" if deadline.startswith("+") else
                                " in its time zone"))
        tick = rt.get("tick")
        if not tick:
            text.append(" · tracked from its next tick", style="dim")
            return text
        text.append(" · current tick ")
        text.append_text(fmt.tick_text(rt))
        text.append(f" (by {fmt.full_time(tick.get('deadline'))})", style="dim")
        return text

    def _show_env(self, env: dict[str, Any]) -> None:
        table = self.query_one("#env-table", DataTable)
        table.clear()
        for entry in env.get("environment") or []:
            value = Text(str(entry.get("value") or ""),
                         style="dim italic" if entry.get("secret") else "")
            table.add_row(entry.get("key"), entry.get("source") or "", value,
                          key=str(entry.get("key")))
        for key in env.get("missing") or []:
            table.add_row(key, "", Text("missing: a job would be blocked", style="bold red"))
        for error in env.get("errors") or []:
            table.add_row("", "", Text(str(error), style="red"))

    def action_run(self) -> None:
        actions.run_template(self, self.rt)

    def action_toggle_active(self) -> None:
        actions.toggle_active(self, self.rt)

    def action_edit(self) -> None:
        def saved(rt: dict[str, Any] | None) -> None:
            if rt:
                self.rt = {**self.rt, **rt}
                self.load()  # the environment, the next due times, the audit trail

        actions.edit_template(self, self.rt, saved)

    def action_clone(self) -> None:
        def made(rt: dict[str, Any] | None) -> None:
            if rt:  # the copy, to review before enabling it
                self.app.post_message(Open("template", rt))

        actions.clone(self, "runtemplate", self.rt, made)
