"""The dispatcher: claims due jobs, runs them through their executor, records the end."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multiflexi.settings import Settings
from multiflexid.aio import nap
from multiflexid.crypto import SecretBox
from multiflexid.dbthread import DbThread
from multiflexid.events import EventBus
from multiflexid.executors.base import ExecResult, Executor, JobSpec
from multiflexid.output import JobOutput, OutputHub
from multiflexid.presenters import job_dict
from multiflexid.services import lifecycle
from multiflexid.services.prepare import Prepared, prepare
from multiflexid.store.orm import Job

log = logging.getLogger("multiflexid.job")

# After a job ends: (prepared job, executor result, the job's output) -> extra work
# (artifacts, result report, retries) done before the job's end is recorded.
PostRun = Callable[[Prepared, ExecResult, JobOutput], Awaitable[None]]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Running:
    job_id: int
    task: asyncio.Task[None]
    cancel: asyncio.Event
    started_at: datetime
    fields: dict[str, Any] = field(default_factory=dict)  # journal fields, once known


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: DbThread,
        box: SecretBox,
        hub: OutputHub,
        bus: EventBus,
        executors: dict[str, Executor],
        *,
        clock: Callable[[], datetime] = _utcnow,
        post_run: list[PostRun] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.hub = hub
        self.bus = bus
        self.executors = executors
        self.clock = clock
        self.post_run = post_run or []
        self.running: dict[int, Running] = {}
        self.wake = asyncio.Event()
        self.accepting = True
        self.queued = 0
        self.on_change: Callable[[], None] = lambda: None
        self.publish: Callable[[str, dict[str, Any]], None] = bus.publish
        self._background: set[asyncio.Future[Any]] = set()

    # --- the loop -----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.dispatch_once()
            except Exception as exc:  # the database may be down: keep going, say so
                log.error("dispatcher: %s", exc)
                await nap(self.wake, stopping, 2.0)
                continue
            await nap(self.wake, stopping, await self._idle_time())

    async def _idle_time(self) -> float:
        # The CLI may queue jobs straight into the database while we sleep: look again
        # within a second at most. Socket clients and the scheduler wake us at once.
        poll = self.settings.poll_seconds
        nxt = await self.db.read(lifecycle.next_after)
        if nxt is None:
            return poll
        return max(0.0, min(poll, (nxt - self.clock()).total_seconds()))

    async def dispatch_once(self) -> list[int]:
        await self._check_cancel_requests()
        free = self.settings.max_parallel - len(self.running)
        if not self.accepting or free <= 0:
            return []
        claimed = await self.db.write(lifecycle.claim, self.clock(), self.settings.node, free)
        for job_id in claimed:
            self._start(job_id)
        if claimed:
            self.on_change()
        return claimed

    def _start(self, job_id: int) -> None:
        cancel = asyncio.Event()
        task = asyncio.create_task(self._execute(job_id, cancel), name=f"job-{job_id}")
        self.running[job_id] = Running(job_id, task, cancel, self.clock())
        task.add_done_callback(lambda _t: self._done(job_id))

    def _done(self, job_id: int) -> None:
        self.running.pop(job_id, None)
        self.on_change()
        self.wake.set()  # a slot is free, and a waiting job of the same template may go

    async def _check_cancel_requests(self) -> None:
        if not self.running:
            return
        ids = list(self.running)
        wanted = await self.db.read(_cancel_requested, ids)
        for job_id in wanted:
            run = self.running.get(job_id)
            if run is not None and not run.cancel.is_set():
                log.info("cancel requested", extra=run.fields or {"MULTIFLEXI_JOB_ID": job_id})
                run.cancel.set()

    # --- one job ------------------------------------------------------------------------

    async def _execute(self, job_id: int, cancel: asyncio.Event) -> None:
        try:
            prep = await self.db.read(
                prepare, job_id, self.box, self.settings.jobs_dir, dict(os.environ)
            )
        except Exception as exc:
            log.exception("job %s: cannot prepare it", job_id)
            await self._record_end(job_id, "failed", None, f"cannot prepare the job: {exc}")
            return
        fields = prep.log_fields
        if job_id in self.running:
            self.running[job_id].fields = fields
        if prep.blocked:
            log.warning("job blocked: %s", prep.blocked, extra=fields)
            await self.db.write(lifecycle.save_prepared, job_id, command=[], env=prep.env_doc,
                                executor=prep.executor)
            await self._record_end(job_id, "blocked", None, prep.blocked)
            return
        executor = self.executors.get(prep.executor)
        out = JobOutput(job_id, self.hub, secrets=prep.secrets,
                        cap=self.settings.output_cap_bytes, log_fields=fields)
        if executor is None:
            missing = f"executor {prep.executor!r} is not available on node {self.settings.node}"
            out.system(f"[multiflexi] {missing}")
            out.close()
            await self.hub.flush()
            await self._record_end(job_id, "failed", None, missing)
            return
        assert prep.workdir is not None
        prep.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await self.db.write(lifecycle.save_prepared, job_id, command=prep.shown_command,
                            env=prep.env_doc, executor=prep.executor)
        log.info("job started: %s", " ".join(prep.shown_command),
                 extra={**fields, "MULTIFLEXI_EXECUTOR": prep.executor})
        spec = JobSpec(
            job_id=job_id, argv=prep.argv, env=prep.env, workdir=prep.workdir,
            timeout=prep.timeout, grace=self.settings.stop_grace_seconds, image=prep.image,
            limits=prep.limits,
            labels={"multiflexi.company": prep.company_slug,
                    "multiflexi.runtemplate_id": str(prep.runtemplate_id)},
        )
        flusher = asyncio.create_task(self._flush_partials(out))

        def started(pid: int | None) -> None:
            self.background(self.db.write(lifecycle.save_pid, job_id, pid))

        try:
            result = await executor.run(spec, out.feed, started, cancel)
        except Exception as exc:  # an executor bug must not leave a job "running"
            log.exception("executor %s failed", prep.executor, extra=fields)
            result = ExecResult("failed_to_start", message=f"executor error: {exc}")
        finally:
            flusher.cancel()
        state, reason = _outcome(result)
        if result.outcome == "failed_to_start":
            out.system(f"[multiflexi] the job did not start: {result.message}")
        elif result.message:
            out.system(f"[multiflexi] {result.message}")
        out.close()
        for hook in self.post_run:
            try:
                await hook(prep, result, out)
            except Exception:
                log.exception("after-job step failed", extra=fields)
        await self.hub.flush()
        await self._record_end(job_id, state, result.exitcode, reason, fields)

    async def _flush_partials(self, out: JobOutput) -> None:
        while True:
            await asyncio.sleep(0.25)
            out.flush_partial()

    async def _record_end(
        self, job_id: int, state: str, exitcode: int | None, reason: str | None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        delay = 0.5
        while True:  # the end of a job is never given up on: retry until the database is back
            try:
                job = await self.db.write(_finish_and_view, job_id, state, self.clock(),
                                          exitcode, reason, self.box)
                break
            except Exception as exc:
                log.error("job %s: cannot record its end yet (%s); retrying", job_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        state = job["state"]  # the app's exit codes may have turned "failed" into success
        log.log(
            logging.INFO if state == "succeeded" else logging.WARNING,
            "job ended: %s%s%s", state,
            f", exit code {exitcode}" if exitcode is not None else "",
            f" ({reason})" if reason else "",
            extra={**(fields or {"MULTIFLEXI_JOB_ID": job_id}),
                   "MULTIFLEXI_EXIT_CODE": exitcode, "MULTIFLEXI_STATE": state},
        )
        self.publish("job.changed", job)

    # --- control ------------------------------------------------------------------------

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` without waiting for it (kept referenced until it ends)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel(self, job_id: int) -> bool:
        run = self.running.get(job_id)
        if run is None:
            return False
        run.cancel.set()
        return True

    async def drain(self, grace: float) -> None:
        """Stop taking jobs; let running ones finish for ``grace`` s, then stop them."""
        self.accepting = False
        tasks = [r.task for r in self.running.values()]
        if not tasks:
            return
        log.info("waiting up to %g s for %d running job(s)", grace, len(tasks))
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            log.warning("stopping %d job(s) still running", len(pending))
            for run in list(self.running.values()):
                run.cancel.set()
            await asyncio.wait(pending)


def _outcome(result: ExecResult) -> tuple[str, str | None]:
    if result.outcome == "exited":
        return ("succeeded" if result.exitcode == 0 else "failed"), None
    if result.outcome == "timed_out":
        return "timed_out", result.message
    if result.outcome == "cancelled":
        return "cancelled", result.message
    return "failed", result.message


def _cancel_requested(s: Any, ids: list[int]) -> list[int]:
    from sqlalchemy import select

    return list(s.scalars(select(Job.id).where(Job.id.in_(ids), Job.cancel_requested.is_(True))))


def _finish_and_view(
    s: Any, job_id: int, state: str, now: datetime, exitcode: int | None, reason: str | None,
    box: SecretBox,
) -> dict[str, Any]:
    job = lifecycle.finish(s, job_id, state=state, now=now, exitcode=exitcode, reason=reason,
                           box=box)
    return job_dict(job)
