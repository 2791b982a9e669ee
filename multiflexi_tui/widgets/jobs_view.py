"""View 4: jobs, newest first, keyset-paged from the daemon and updated live."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from multiflexi_tui import actions
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import DaemonLink, link_of
from multiflexi_tui.widgets.resource_view import Column, Page, Record, ResourceView


class JobsView(ResourceView):
    NOUN = "jobs"
    DEFAULT_SORT = ("id", True)
    COLUMNS = (
        Column("id", "ID", lambda r: r["id"], width=6),
        Column("state", "State", lambda r: fmt.state_text(r.get("state")), width=11,
               sort=lambda r: r.get("state")),
        Column("runtemplate_name", "Template",
               lambda r: r.get("runtemplate_name") or f"#{r.get('runtemplate_id')}"),
        Column("begin", "Started", lambda r: fmt.short_time(r.get("begin") or r.get("schedule")),
               sort=lambda r: r.get("begin") or r.get("schedule")),
        Column("took", "Took", lambda r: fmt.duration(r.get("begin"), r.get("end")),
               sort=lambda r: fmt.duration_seconds(r.get("begin"), r.get("end"))),
        Column("exitcode", "Exit", fmt.exit_text),
        Column("launched_by", "By", lambda r: r.get("launched_by") or ""),
        Column("schedule_type", "Type", lambda r: r.get("schedule_type") or ""),
    )

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("l", "logs", "Logs", id="logs"),
        Binding("r", "run", "Run again", id="run"),
        Binding("c", "cancel", "Cancel job", id="cancel"),
    ]

    def on_mount(self) -> None:
        super().on_mount()
        self.link.job_changed.subscribe(self, self.upsert)
        self.link.job_output.subscribe(self, self._output)

    def server_filter(self) -> dict[str, Any]:
        for token in self.filter_text.lower().split():
            if token.startswith("state:") and token[6:] in fmt.JOB_STATES:
                return {"state": token[6:]}
        return {}

    def client_tokens(self) -> list[str]:
        return [t for t in self.filter_text.lower().split() if not t.startswith("state:")]

    def accepts(self, rec: Record) -> bool:
        wanted = {**self.fixed, **self.server_filter()}
        return all(rec.get(k) == v for k, v in wanted.items())

    MAX_ROWS = 2000

    def trim(self) -> None:
        """New jobs arrive all day long: past MAX_ROWS the oldest loaded ones are let go,
        and paging resumes from the oldest kept (keyset paging makes that exact)."""
        if len(self.records) <= self.MAX_ROWS:
            return
        ids = sorted((int(k) for k in self.records), reverse=True)
        for old in ids[self.MAX_ROWS:]:
            del self.records[str(old)]
        self._next = ids[self.MAX_ROWS - 1]

    def _takes_new(self, rec: Record) -> bool:
        if not self._loaded_once:
            return False
        if self._next is None or not self.records:
            return True
        oldest = min(int(k) for k in self.records)
        return int(rec["id"]) >= oldest

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        params: dict[str, Any] = {**self.fixed, **self.server_filter(), "limit": self.PAGE_SIZE}
        if cursor is not None:
            params["before_id"] = cursor
        reply = await link.call_with("job.list", params)
        return Page(list(reply.get("items") or []), reply.get("next_before_id"))

    def search_extra(self, rec: Record) -> str:
        return " ".join(str(x) for x in (
            rec.get("node"), rec.get("reason"), rec.get("executor"),
            f"template:{rec.get('runtemplate_id')}", f"company:{rec.get('company_id')}",
            f"app:{rec.get('app_id')}") if x)

    def _output(self, chunk: Record) -> None:
        # The daemon sends no job.changed when a job starts; output proves it runs.
        rec = self.records.get(str(chunk.get("job_id")))
        if rec is not None and rec.get("state") in ("pending", "scheduled", "claimed"):
            self.upsert({**rec, "state": "running"})

    def open(self, rec: Record) -> None:
        actions.open_job(self, int(rec["id"]))

    def action_logs(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.open_job(self, int(rec["id"]), tab="output")

    def action_run(self) -> None:
        rec = self.current()
        if rec is None:
            return
        if not rec.get("runtemplate_id"):
            self.notify("this job has no run template any more", severity="warning")
            return
        actions.run_template(self, {"id": rec["runtemplate_id"],
                                    "name": rec.get("runtemplate_name")})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        rec = self.current()
        if action == "cancel":
            return (rec is not None and rec.get("state") not in fmt.FINAL_STATES
                    and link_of(self).may("operator", rec.get("company_id")))
        if action == "run":
            return rec is not None and link_of(self).may("operator", rec.get("company_id"))
        if action == "logs":
            return rec is not None
        return super().check_action(action, parameters)

    def upsert(self, rec: Record) -> None:
        super().upsert(rec)
        self.refresh_bindings()  # the row under the cursor may have ended

    def action_cancel(self) -> None:
        rec = self.current()
        if rec is not None:
            actions.cancel_job(self, rec)
