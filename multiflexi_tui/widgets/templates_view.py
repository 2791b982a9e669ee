"""View 3: run templates (app × company × schedule), updated live from the daemon.

`space` marks rows (the ✓ column); `b` changes all marked at once (run, enable, disable,
set a configuration value), after showing the daemon's dry-run diff."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from multiflexi_tui import actions
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import DaemonLink, link_of
from multiflexi_tui.messages import Open
from multiflexi_tui.widgets.resource_view import (
    Column,
    Page,
    Record,
    ResourceView,
    offset_page,
)


def _last_id(r: Record) -> int:
    last = r.get("last_job") or {}
    return int(last.get("id") or 0)


class TemplatesView(ResourceView):
    NOUN = "run templates"
    COLUMNS = (
        Column("mark", "✓", lambda r: "", sort=lambda r: 0, width=1),
        Column("id", "ID", lambda r: r["id"], width=4),
        Column("name", "Name", lambda r: r.get("name") or ""),
        Column("company", "Company", lambda r: r.get("company") or f"#{r.get('company_id')}"),
        Column("interv", "Schedule", fmt.schedule_text),
        Column("active", "On", fmt.active_text, sort=lambda r: not r.get("active")),
        Column("next_schedule", "Next", lambda r: fmt.short_time(r.get("next_schedule"))),
        Column("tick", "Deadline", fmt.tick_text, sort=fmt.tick_rank),
        Column("last_job", "Last", lambda r: fmt.last_job_text(r.get("last_job")),
               sort=lambda r: (r.get("last_job") or {}).get("state")),
        Column("app", "Application", lambda r: r.get("app") or f"#{r.get('app_id')}"),
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "run", "Run now", id="run"),
        Binding("t", "toggle_active", "On/off", id="toggle"),
        Binding("n", "new", "New", id="new"),
        Binding("e", "edit", "Edit", id="edit"),
        # in the help (?), not the footer: an 80-column footer has no room for them
        Binding("c", "clone", "Clone", id="clone", show=False),
        Binding("l", "logs", "Last log", id="logs", show=False),
        Binding("space", "mark", "Mark", id="mark"),
        Binding("b", "bulk", "Bulk change", id="bulk"),
        Binding("u", "unmark", "Unmark all", id="unmark", show=False),
    ]

    def __init__(self, *, fixed: dict[str, Any] | None = None, id: str | None = None) -> None:
        super().__init__(fixed=fixed, id=id)
        self.marked: dict[str, Record] = {}  # by key, in the order marked

    def on_mount(self) -> None:
        super().on_mount()
        self.link.runtemplate_changed.subscribe(self, self.upsert)
        self.link.job_changed.subscribe(self, self._job_changed)

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        return await offset_page(link, "runtemplate.list", cursor, self.PAGE_SIZE, **self.fixed)

    def _job_changed(self, job: Record) -> None:
        """A template's last job, kept current from job events."""
        key = str(job.get("runtemplate_id"))
        rec = self.records.get(key)
        if rec is None or int(job["id"]) < _last_id(rec):
            return
        last = {"id": job["id"], "state": job.get("state"), "exitcode": job.get("exitcode"),
                "end": job.get("end")}
        self.upsert({**rec, "last_job": last})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "logs":
            rec = self.current()
            return rec is not None and bool(rec.get("last_job"))
        if action in ("run", "toggle_active"):  # hidden from those who may not
            rec = self.current()
            return rec is not None and link_of(self).may("operator", rec.get("company_id"))
        if action == "new":
            return link_of(self).may("admin")
        if action == "mark":
            return self.current() is not None and link_of(self).may("operator")
        if action in ("bulk", "unmark"):
            return bool(self.marked) and link_of(self).may("operator")
        if action in ("edit", "clone"):
            rec = self.current()
            return rec is not None and link_of(self).may("admin", rec.get("company_id"))
        return super().check_action(action, parameters)

    def search_extra(self, rec: Record) -> str:
        return " ".join([*(rec.get("tags") or []), rec.get("note") or ""])

    def cell(self, col: Column, rec: Record) -> Any:
        if col.key == "mark":
            return "✓" if self.key_of(rec) in self.marked else ""
        return col.cell(rec)

    def summary_extra(self) -> list[str]:
        return [f"{len(self.marked)} marked (b: bulk change)"] if self.marked else []

    def _show_marks(self, *keys: str) -> None:
        for key in keys:
            rec = self.records.get(key)
            if rec is not None:
                try:
                    self.table.update_cell(key, "mark", self.cell(self.COLUMNS[0], rec))
                except Exception:  # not shown (filtered out)
                    pass
        self._summarize()
        self.refresh_bindings()

    def action_mark(self) -> None:
        """Mark or unmark the row, and go to the next one (space, space... marks several)."""
        rec = self.current()
        if rec is None:
            return
        key = self.key_of(rec)
        if self.marked.pop(key, None) is None:
            self.marked[key] = rec
        self._show_marks(key)
        self.table.action_cursor_down()

    def action_unmark(self) -> None:
        keys = list(self.marked)
        self.marked.clear()
        self._show_marks(*keys)

    def action_bulk(self) -> None:
        from multiflexi_tui.screens.bulk import BulkScreen

        def done(result: dict[str, Any] | None) -> None:
            if not result or not result.get("applied"):
                return
            moved = len([c for c in result.get("changes") or [] if c.get("diff")])
            jobs = result.get("jobs") or []
            self.notify(f"{result.get('op')}: {moved} run template(s) changed"
                        + (f", {len(jobs)} job(s) started" if jobs else ""))
            self.action_unmark()

        targets = [{**self.records.get(k, {}), **rec} for k, rec in self.marked.items()]
        self.app.push_screen(BulkScreen(targets), done)

    def open(self, rec: Record) -> None:
        self.post_message(Open("template", rec))

    def action_run(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.run_template(self, rec)

    def action_toggle_active(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.toggle_active(self, rec)

    def action_new(self) -> None:
        from multiflexi_tui.screens.wizard import WizardScreen

        def created(rt: Record | None) -> None:
            if not rt:
                return
            self.notify(f"run template #{rt['id']} {rt.get('name')} created; next run "
                        f"{fmt.short_time(rt.get('next_schedule'))}")
            self.upsert(rt)
            self.call_after_refresh(self.select_key, self.key_of(rt))

        self.app.push_screen(WizardScreen(**{
            k: v for k, v in self.fixed.items() if k in ("app_id", "company_id")}), created)

    def _show(self, rt: Record | None) -> None:
        if rt:
            self.upsert(rt)
            self.call_after_refresh(self.select_key, self.key_of(rt))

    def action_edit(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.edit_template(self, rec, self._show)

    def action_clone(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.clone(self, "runtemplate", rec, self._show)

    def action_logs(self) -> None:
        rec = self.current()
        if rec is None:
            return
        last = rec.get("last_job")
        if not last:
            self.notify(f"{rec.get('name')} has not run yet", severity="warning")
            return
        actions.open_job(self, int(last["id"]), tab="output")
