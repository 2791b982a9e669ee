"""A job: its output (followed live while it runs), metadata, environment, artifacts.

The output opens at its end: the last screenfuls (``job.output {tail}``), however long
the output is; reaching the top (scrolling up, `home`, `pgup`) loads the output before
(``job.output {before_seq}``), a page at a time.

Following without gaps or duplicates, as shared/PROTOCOL.md says: subscribe to the job's
output first, then read ``job.output`` (its end, then forward from the last seq seen),
then apply pushed chunks whose seq is newer; stop at the ``job.changed`` that reports a
final state. After a reconnect the same steps continue from the last seq seen.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable

from multiflexi.errors import MultiFlexiError, NotFound
from multiflexi_tui import actions
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import link_of
from multiflexi_tui.messages import Open
from multiflexi_tui.screens.detail import DetailScreen
from multiflexi_tui.widgets.action_runs import runs_text
from multiflexi_tui.widgets.key_values import KeyValues
from multiflexi_tui.widgets.list_table import ListTable
from multiflexi_tui.widgets.output_log import OutputLog

MASK = "********"
PAGE_BYTES = 64 * 1024  # output read at a time from the end and back
# Info rows left out when they have nothing to say.
OPTIONAL = {"Reason", "Queued until", "PID", "Timeout", "Command", "Actions"}


class JobScreen(DetailScreen):
    TABS = (("output", "1 Output"), ("info", "2 Info"), ("environment", "3 Environment"),
            ("artifacts", "4 Artifacts"))

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("1", "tab('output')", "Output", show=False),
        Binding("l", "tab('output')", "Logs", show=False),
        Binding("2", "tab('info')", "Info", show=False),
        Binding("3", "tab('environment')", "Environment", show=False),
        Binding("4", "tab('artifacts')", "Artifacts", show=False),
        Binding("f", "follow", "Follow", id="follow"),
        Binding("c", "cancel", "Cancel job", id="cancel"),
        Binding("r", "run", "Run again", id="run"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, job_id: int, tab: str | None = None) -> None:
        super().__init__(tab)
        self.job_id = job_id
        self.job: dict[str, Any] = {"id": job_id}
        self.last_seq = -1
        self.first_seq: int | None = None  # the first chunk shown (earlier ones: paging back)
        self.subscribed = False
        self._paging = False
        self._held: list[dict[str, Any]] = []
        self._finished = False

    def panes(self) -> Iterable[Widget]:
        yield OutputLog(id="output-log")
        yield KeyValues(id="info-pairs")
        env = DataTable[object](id="env-table", cursor_type="row", zebra_stripes=True)
        yield env
        yield ListTable(id="artifact-table")

    def on_mount(self) -> None:
        self.headline(f"Job #{self.job_id}")
        env = self.query_one("#env-table", DataTable)
        env.add_column("Variable", key="key")
        env.add_column("Value", key="value")
        arts = self.query_one("#artifact-table", ListTable)
        for key, label in (("id", "ID"), ("filename", "File"), ("content_type", "Type"),
                           ("size", "Size"), ("note", "Note")):
            arts.add_column(label, key=key)
        self.link.job_changed.subscribe(self, self._job_changed)
        self.link.job_output.subscribe(self, self._output_pushed)
        super().on_mount()

    @property
    def log_widget(self) -> OutputLog:
        return self.query_one(OutputLog)

    # --- loading and following ------------------------------------------------------------

    def load(self) -> None:
        self.subscribed = False  # a new connection has no subscriptions
        self._follow()

    @work(exclusive=True, group="follow", exit_on_error=False)
    async def _follow(self) -> None:
        link = self.link
        try:
            job = await link.call("job.get", id=self.job_id)
            self._show(job)
            if job["state"] not in fmt.FINAL_STATES:
                # Chunks pushed from now on wait until what is stored has been read: one
                # applied first would set where reading starts, and skip what came before.
                self._paging = True
                await link.call("events.subscribe", job_output=self.job_id)
                self.subscribed = True
                # It may have ended before the subscription: look once more.
                self._show(await link.call("job.get", id=self.job_id))
            if self.last_seq < 0:
                await self._tail()
            await self._page_output()
            if self.job.get("state") in fmt.FINAL_STATES:
                await self._finish()
        except NotFound as exc:
            self.headline(Text(f"Job #{self.job_id}: {exc.message}", style="bold red"))
        except MultiFlexiError as exc:
            self.log_widget.note(f"[multiflexi-tui] {exc.message}")
        finally:
            self._paging = False  # (a failed read: the next load starts from the last seq)

    async def _tail(self) -> None:
        """The end of the output, however long it is (pushed chunks wait meanwhile)."""
        self._paging = True
        try:
            page = await self.link.call("job.output", id=self.job_id, tail=True,
                                        max_bytes=PAGE_BYTES)
            for chunk in page.get("chunks") or []:
                self._apply(chunk)
            self.first_seq = page.get("first_seq")
            self.log_widget.more_before = bool(page.get("more_before"))
        finally:
            self._paging = False
        self._show(self.job)  # (no await until _page_output holds pushed chunks again)

    @on(OutputLog.Earlier)
    def _earlier(self, event: OutputLog.Earlier) -> None:
        event.stop()
        self._load_earlier()

    @work(exclusive=True, group="earlier", exit_on_error=False)
    async def _load_earlier(self) -> None:
        if self.first_seq is None:
            return
        log = self.log_widget
        try:
            page = await self.link.call("job.output", id=self.job_id,
                                        before_seq=self.first_seq, max_bytes=PAGE_BYTES)
        except MultiFlexiError as exc:
            self.notify(exc.message, title="Cannot read earlier output", severity="error")
            return
        log.prepend(page.get("chunks") or [])
        self.first_seq = page.get("first_seq")
        log.more_before = bool(page.get("more_before"))
        if log.end_dropped:
            log.auto_scroll = False  # the newest lines are let go: not following them
        self._show(self.job)

    async def _page_output(self) -> None:
        self._paging = True
        try:
            while True:
                page = await self.link.call("job.output", id=self.job_id,
                                            after_seq=self.last_seq, limit=2000)
                for chunk in page.get("chunks") or []:
                    self._apply(chunk)
                if page.get("done") or not page.get("chunks"):
                    break
        finally:
            self._paging = False
            held, self._held = self._held, []
            for chunk in held:
                self._apply(chunk)

    async def _finish(self) -> None:
        """The job has ended: final metadata (exit meaning, artifacts), the rest of its
        output, and no more output subscription."""
        if self._finished:
            return
        self._finished = True
        link = self.link
        job = await link.call("job.get", id=self.job_id)
        self._show(job)
        await self._page_output()
        self.log_widget.flush_partial()
        if self.subscribed:
            self.subscribed = False
            await link.call("events.unsubscribe", job_output=self.job_id)

    def _apply(self, chunk: dict[str, Any]) -> None:
        seq = int(chunk.get("seq", -1))
        if seq <= self.last_seq:
            return
        self.last_seq = seq
        self.log_widget.add_chunk(chunk)

    def _output_pushed(self, chunk: dict[str, Any]) -> None:
        if chunk.get("job_id") != self.job_id:
            return
        if self.job.get("state") in ("pending", "scheduled"):
            self._show({**self.job, "state": "running"})  # output proves it runs
        if self._paging:
            self._held.append(chunk)
        else:
            self._apply(chunk)

    def _job_changed(self, job: dict[str, Any]) -> None:
        if job.get("id") != self.job_id:
            return
        self._show({**self.job, **job, "exit_meaning": job.get("exit_meaning")
                    or self.job.get("exit_meaning")})
        if job.get("state") in fmt.FINAL_STATES and not self._finished:
            self._finish_worker()

    @work(exclusive=True, group="finish", exit_on_error=False)
    async def _finish_worker(self) -> None:
        try:
            await self._finish()
        except MultiFlexiError as exc:
            self._finished = False
            self.log_widget.note(f"[multiflexi-tui] {exc.message}")

    def on_unmount(self) -> None:
        if self.subscribed and self.link.connected:
            link, job_id = self.link, self.job_id

            async def unsubscribe() -> None:
                try:
                    await link.call("events.unsubscribe", job_output=job_id)
                except MultiFlexiError:
                    pass

            self.app.run_worker(unsubscribe(), exit_on_error=False)

    # --- showing ----------------------------------------------------------------------------

    def _show(self, job: dict[str, Any]) -> None:
        self.job = job
        state = job.get("state")
        head = Text(f"Job #{job['id']} ")
        head.append_text(fmt.state_text(state))
        if job.get("exitcode") is not None:
            head.append(f" exit {job['exitcode']}")
        head.append(f" · {job.get('runtemplate_name') or '?'}")
        if job.get("company"):
            head.append(f" ({job['company']})")
        took = fmt.duration(job.get("begin"), job.get("end"))
        if took:
            head.append(f" · {took}")
        if state in fmt.ACTIVE_STATES:
            head.append(" · following" if self.log_widget.auto_scroll else " · paused",
                        style="dim")
        if self.log_widget.more_before:
            head.append(" · earlier: home", style="dim")
        self.headline(head)
        self.query_one("#info-pairs", KeyValues).set_pairs(
            (label, value) for label, value in self._pairs(job)
            if value not in (None, "") or label not in OPTIONAL)
        self.refresh_bindings()
        self._show_env(job.get("environment"))
        self._show_artifacts(job.get("artifacts"))

    def _pairs(self, job: dict[str, Any]) -> list[tuple[str, Any]]:
        command = job.get("command")
        attempt = str(job.get("attempt") or 1)
        if job.get("retry_of"):
            attempt += f" (retry of job #{job['retry_of']})"
        report = job.get("report")
        DASH = fmt.DASH
        report_text = DASH
        if report:
            report_text = f"{report.get('status')}: {report.get('message') or ''}".strip(": ")
        output = fmt.size_text(job.get("output_bytes"))
        if job.get("output_dropped"):
            output += f" ({fmt.size_text(job['output_dropped'])} dropped over the limit)"
        return [
            ("State", fmt.state_text(job.get("state"))),
            ("Reason", job.get("reason")),
            ("Template", f"{job.get('runtemplate_name') or DASH} (#{job.get('runtemplate_id')})"),
            ("Application", f"{job.get('app') or DASH} (#{job.get('app_id')})"),
            ("Company", f"{job.get('company') or DASH} (#{job.get('company_id')})"),
            ("Executor", job.get("executor")),
            ("Node", job.get("node")),
            ("Launched by", job.get("launched_by")),
            ("Type", job.get("schedule_type")),
            ("Attempt", attempt),
            ("Due", fmt.full_time(job.get("schedule"))),
            ("Queued until", fmt.full_time(job.get("queued_after"))
             if job.get("queued_after") else None),
            ("Began", fmt.full_time(job.get("begin"))),
            ("Ended", fmt.full_time(job.get("end"))),
            ("Took", fmt.duration(job.get("begin"), job.get("end"))),
            ("Exit code", fmt.exit_meaning_text(job)),
            ("Report", report_text),
            ("Command", shlex.join(command) if isinstance(command, list) and command else None),
            ("PID", job.get("pid")),
            ("Timeout", f"{job['timeout']} s" if job.get("timeout") else None),
            ("Output", output),
            ("Created", fmt.full_time(job.get("created_at"))),
            ("Actions", runs_text(job.get("action_runs"))),
        ]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        may_operate = link_of(self).may("operator", self.job.get("company_id"))
        if action == "cancel":
            return self.job.get("state") not in fmt.FINAL_STATES and may_operate
        if action == "run":
            return may_operate
        if action == "follow":  # (or read the end again after paging far back)
            return (self.job.get("state") not in fmt.FINAL_STATES
                    or self.log_widget.end_dropped)
        return True

    def _show_env(self, env: dict[str, Any] | None) -> None:
        table = self.query_one("#env-table", DataTable)
        table.clear()
        if env is None:
            table.add_row(Text("(not prepared yet)", style="dim"), "")
            return
        for key in sorted(env):
            value = "" if env[key] is None else str(env[key])
            shown = Text(value, style="dim italic") if value == MASK else Text(value)
            table.add_row(key, shown, key=key)

    def _show_artifacts(self, artifacts: list[dict[str, Any]] | None) -> None:
        table = self.query_one("#artifact-table", ListTable)
        table.clear()
        for art in artifacts or []:
            note = art.get("note") or ("skipped" if art.get("skipped") else "")
            table.add_row(art["id"], art.get("filename") or art.get("name") or "",
                          art.get("content_type") or "", fmt.size_text(art.get("size")), note,
                          key=str(art["id"]))

    # --- actions ----------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#artifact-table")
    def _artifact_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        art_id = int(str(event.row_key.value))
        for art in self.job.get("artifacts") or []:
            if art["id"] == art_id:
                self.post_message(Open("artifact", art))

    def action_follow(self) -> None:
        log = self.log_widget
        if log.end_dropped:  # paged so far back that the end was let go: read it again
            log.clear_output()
            self.last_seq, self.first_seq = -1, None
            log.auto_scroll = True
            self.load()
            return
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self.notify("following the output" if log.auto_scroll else "stopped following")
        self._show(self.job)

    def action_cancel(self) -> None:
        actions.cancel_job(self, self.job)

    def action_run(self) -> None:
        if not self.job.get("runtemplate_id"):
            self.notify("this job has no run template any more", severity="warning")
            return
        actions.run_template(self, {"id": self.job["runtemplate_id"],
                                    "name": self.job.get("runtemplate_name"),
                                    "company": self.job.get("company")})

    def action_reload(self) -> None:
        self._finished = False
        self.load()
