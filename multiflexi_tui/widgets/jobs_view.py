"""View 4: jobs, newest first, keyset-paged from the daemon and updated live.

Its `/` filter is a search the daemon runs (multiflexi_tui/jobsearch.py: text in the
output, state, company, app, template, a time range), paged from the daemon like the
whole list; the summary line shows the line that matched in the job under the cursor.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.binding import Binding, BindingType

from multiflexi.errors import NotFound
from multiflexi_tui import actions, jobsearch
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import DaemonLink, link_of
from multiflexi_tui.widgets.resource_view import Column, Page, Record, ResourceView


class JobsView(ResourceView):
    NOUN = "jobs"
    DEFAULT_SORT = ("id", True)
    FILTER_HINT = ("search output: words; or state:failed company:acme app:X template:N "
                   "since:2024-05-01 until:…")
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
        self._resolved: tuple[int | None, int | None] = (None, None)
        super().on_mount()
        self.link.job_changed.subscribe(self, self.upsert)
        self.link.job_output.subscribe(self, self._output)

    def search(self) -> jobsearch.JobSearch:
        return jobsearch.parse(self.filter_text)

    def server_filter(self) -> dict[str, Any]:
        search = self.search()
        return {"search": search.key()} if search.key() != ((), None, None) else {}

    def client_tokens(self) -> list[str]:
        return []  # the daemon filters and searches

    def accepts(self, rec: Record) -> bool:
        if not all(rec.get(k) == v for k, v in self.fixed.items()):
            return False
        return jobsearch.matches(self.search(), rec, *self._resolved)

    def filter_note(self) -> str:
        search = self.search()
        if search.problems:
            return "; ".join(search.problems)
        rec = self.current()
        match = rec.get("match") if rec else None
        return f"match: {match['line']}" if isinstance(match, dict) else ""

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
        if not self._loaded_once or self.search().text:
            return False  # (whether its output matches, only the daemon knows)
        if self._next is None or not self.records:
            return True
        oldest = min(int(k) for k in self.records)
        return int(rec["id"]) >= oldest

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        search = self.search()
        params: dict[str, Any] = {**search.params, **self.fixed, "limit": self.PAGE_SIZE}
        try:
            self._resolved = (await self._company_id(link, search.company),
                              await self._app_id(link, search.app))
        except NotFound as exc:
            self.notify(exc.message, title="Cannot search jobs", severity="warning")
            return Page([], None)
        for key, value in zip(("company_id", "app_id"), self._resolved, strict=True):
            if value is not None:
                params[key] = value
        if isinstance(cursor, int):  # after trim(): the oldest id kept
            params["before_id"] = cursor
        elif cursor is not None:
            params["cursor"] = cursor
        reply = await link.call_with("job.list", params)
        return Page(list(reply.get("items") or []), reply.get("next_cursor"))

    async def _company_id(self, link: DaemonLink, ref: str | None) -> int | None:
        if ref is None:
            return None
        key = "id" if ref.isdigit() else "slug"
        company = await link.call("company.get", **{key: int(ref) if ref.isdigit() else ref})
        return int(company["id"])

    async def _app_id(self, link: DaemonLink, ref: str | None) -> int | None:
        if ref is None or ref.isdigit():
            return int(ref) if ref else None
        offset = 0
        while True:  # by name (any case) or uuid
            page = await link.call("app.list", limit=1000, offset=offset)
            for app in page.get("items") or []:
                if ref.lower() in (str(app.get("name")).lower(), str(app.get("uuid")).lower()):
                    return int(app["id"])
            offset += 1000
            if offset >= int(page.get("total") or 0):
                raise NotFound(f"no application named {ref!r}")

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
