"""The dispatcher: claims due jobs, runs them through their executor, records the end.

Throughput comes from not waiting where nothing needs waiting:
- jobs are claimed ahead (up to ``max_parallel`` more than run) and prepared while they
  wait for a slot, so a free slot is filled at once;
- a slot is free as soon as the job's process has ended; its end is written by the
  group-committing writer (see dbthread.py) while the next job already runs;
- a claim is committed before anything is launched, so a job never runs twice. A claimed
  job that has not started when the daemon stops goes back to the queue; if the daemon
  dies it is marked ``lost`` at the next start like a running one (its result unknown).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select

from multiflexi.errors import NotFound
from multiflexi.settings import Settings
from multiflexid.aio import nap
from multiflexid.crypto import SecretBox
from multiflexid.dbthread import DbThread
from multiflexid.domain.appdef import ExitCodeDef
from multiflexid.events import EventBus
from multiflexid.executors.base import ExecResult, Executor, JobSpec
from multiflexid.health import Health
from multiflexid.output import JobOutput, OutputHub
from multiflexid.presenters import job_dict
from multiflexid.services import lifecycle
from multiflexid.services.jobs import job_view
from multiflexid.services.prepare import (
    LaunchCache,
    Prepared,
    context_key,
    load_context,
    prepare_row,
)
from multiflexid.services.runtemplates import get_runtemplate, runtemplate_view
from multiflexid.store.orm import Job

log = logging.getLogger("multiflexid.job")

# A job still running this long after it started gets its start recorded on its own.
START_WRITE_DELAY = 0.05

# After a job ends: (prepared job, executor result, the job's output) -> extra work
# (artifacts, result report) done before the job's end is recorded.
PostRun = Callable[[Prepared, ExecResult, JobOutput], Awaitable[None]]
Phase = Literal["waiting", "running", "ending"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Running:
    """A job this node has claimed, until its end is recorded."""

    job_id: int
    task: asyncio.Task[None]
    cancel: asyncio.Event
    phase: Phase = "waiting"
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
        lines: Callable[[dict[str, Any], str, str], None] | None = None,
        health: Health | None = None,
    ) -> None:
        self.health = health or Health()
        self.lines = lines  # where output lines go besides the database (journal/stderr)
        self.settings = settings
        self.db = db
        self.box = box
        self.hub = hub
        self.bus = bus
        self.executors = executors
        self.clock = clock
        self.post_run = post_run or []
        self.running: dict[int, Running] = {}  # every job held by this node
        self.slots = asyncio.Semaphore(settings.max_parallel)
        self.wake = asyncio.Event()
        self.draining = asyncio.Event()
        self.accepting = True
        self.on_change: Callable[[], None] = lambda: None
        self.publish: Callable[[str, dict[str, Any]], None] = bus.publish
        self._background: set[asyncio.Future[Any]] = set()
        self.cache = LaunchCache()
        self._cancel_checked = 0.0
        self._base_env = dict(os.environ)

    @property
    def executing(self) -> list[int]:
        """Jobs whose process (or container) runs now."""
        return sorted(j for j, r in self.running.items() if r.phase == "running")

    # --- the loop -----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                claimed, room = await self.dispatch_once()
                # Full: a free slot wakes us. Otherwise sleep until the next queued job is
                # due, at most poll_seconds (the CLI may queue jobs straight into SQLite;
                # socket clients, the scheduler and NOTIFY wake us at once).
                idle = self.settings.poll_seconds
                if len(claimed) < room:
                    idle = await self._idle_time(idle)
            except Exception as exc:  # the database may be down: keep going, say so
                self.health.failed("dispatcher", exc)
                await nap(self.wake, stopping, 2.0)
                continue
            self.health.ok("dispatcher")
            await nap(self.wake, stopping, idle)

    async def _idle_time(self, poll: float) -> float:
        nxt = await self.db.read(lifecycle.next_after)
        if nxt is None:
            return poll
        return max(0.0, min(poll, (nxt - self.clock()).total_seconds()))

    def _held(self) -> int:
        return sum(1 for r in self.running.values() if r.phase != "ending")

    def _capacity(self) -> int:
        # Claim up to one more job per slot than can run: it waits prepared for a slot.
        return 2 * self.settings.max_parallel

    async def dispatch_once(self) -> tuple[list[Any], int]:
        """Claim what fits; (claimed job rows, how many could have been claimed).

        Claims refill in bulk: only once at most ``max_parallel`` jobs are held (so every
        slot still has work), which halves the claims under a steady stream of jobs."""
        await self._check_cancel_requests()
        room = self._capacity() - self._held()
        if not self.accepting or room < max(1, self.settings.max_parallel):
            return [], 0
        rows = await self.db.write(lifecycle.claim_rows, self.clock(), self.settings.node,
                                   room)
        for row in rows:
            self._start(row)
        if rows:
            self.on_change()
        return rows, room

    def _start(self, row: Any) -> None:
        job_id = row[0]
        cancel = asyncio.Event()
        task = asyncio.create_task(self._execute(row, cancel), name=f"job-{job_id}")
        self.running[job_id] = Running(job_id, task, cancel)
        task.add_done_callback(lambda t: self._done(job_id, t))

    def _done(self, job_id: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("job %s: %s", job_id, task.exception(), exc_info=task.exception(),
                      extra={"MULTIFLEXI_JOB_ID": job_id})
        self.running.pop(job_id, None)
        self.on_change()
        self.wake.set()

    async def _check_cancel_requests(self) -> None:
        """Cancel requests other nodes (or the CLI) left in the database; once a second."""
        now = asyncio.get_running_loop().time()
        if not self.running or now - self._cancel_checked < 1.0:
            return
        self._cancel_checked = now
        wanted = await self.db.read(_cancel_requested, list(self.running))
        for job_id in wanted:
            run = self.running.get(job_id)
            if run is not None and not run.cancel.is_set():
                log.info("cancel requested", extra=run.fields or {"MULTIFLEXI_JOB_ID": job_id})
                run.cancel.set()

    # --- one job ------------------------------------------------------------------------

    async def _prepare(self, row: Any) -> Prepared:
        """The job ready to launch: from the template's cached context when it is current,
        else the context is read first (in a database thread)."""
        rt_id, key = context_key(row)
        ctx = self.cache.get(rt_id, key) if rt_id is not None else None
        if ctx is None and rt_id is not None:
            ctx = await self.db.read(load_context, rt_id, self.box, key)
            self.cache.put(ctx)
        return prepare_row(row, ctx, self.box, self.settings.jobs_dir, self._base_env)

    async def _execute(self, row: Any, cancel: asyncio.Event) -> None:
        job_id = row[0]
        run = self.running[job_id]
        try:
            prep = await self._prepare(row)
        except Exception as exc:
            log.exception("job %s: cannot prepare it", job_id)
            run.phase = "ending"
            await self._record_end(job_id, "failed", None, f"cannot prepare the job: {exc}")
            return
        fields = run.fields = prep.log_fields
        if prep.blocked:
            run.phase = "ending"
            log.warning("job blocked: %s", prep.blocked, extra=fields)
            await self._record_end(job_id, "blocked", None, prep.blocked, fields,
                                   prepared=_not_started([], prep.env_doc))
            return
        if not await self._acquire_slot(cancel):
            run.phase = "ending"
            if cancel.is_set():
                await self._record_end(job_id, "cancelled", None, "cancelled before it started",
                                       fields, prepared=_not_started([], prep.env_doc))
            else:  # the daemon is stopping: it never started, so it simply waits again
                await self.db.write(lifecycle.release, [job_id], self.clock())
                log.info("job not started; back in the queue", extra=fields)
            return
        try:
            run.phase = "running"
            self.on_change()
            result, out, start = await self._launch(prep, cancel)
        finally:
            run.phase = "ending"
            self.slots.release()
            self.wake.set()  # the slot is free now, while the end is being recorded
        for hook in self.post_run:
            try:
                await hook(prep, result, out)
            except Exception:
                log.exception("after-job step failed", extra=fields)
        self.hub.flush_soon()  # the output is written before (or with) the job's end
        state, reason = _outcome(result)
        await self._record_end(
            job_id, state, result.exitcode, reason, fields,
            prepared=start, prep=prep,
        )

    async def _acquire_slot(self, cancel: asyncio.Event) -> bool:
        """Wait for a free slot; False if cancelled or draining meanwhile (no slot held)."""
        if cancel.is_set() or self.draining.is_set():
            return False
        if not self.slots.locked():  # a slot is free: take it without the waiting machinery
            await self.slots.acquire()
            return True
        acquire = asyncio.ensure_future(self.slots.acquire())
        stops = [asyncio.ensure_future(cancel.wait()),
                 asyncio.ensure_future(self.draining.wait())]
        try:
            await asyncio.wait([acquire, *stops], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in stops:
                waiter.cancel()
        if not acquire.done():
            acquire.cancel()
            return False
        if cancel.is_set() or self.draining.is_set():
            self.slots.release()
            return False
        return True

    async def _launch(
        self, prep: Prepared, cancel: asyncio.Event
    ) -> tuple[ExecResult, JobOutput, dict[str, Any] | None]:
        job_id, fields = prep.job_id, prep.log_fields
        out = JobOutput(job_id, self.hub, secrets=prep.secrets,
                        cap=self.settings.output_cap_bytes, log_fields=fields, lines=self.lines,
                        journal_budget=self.settings.journal_output_bytes)
        executor = self.executors.get(prep.executor)
        if executor is None:
            missing = f"executor {prep.executor!r} is not available on node {self.settings.node}"
            out.system(f"[multiflexi] {missing}")
            out.close()
            return (ExecResult("failed_to_start", message=missing), out,
                    _not_started(prep.shown_command, prep.env_doc))
        assert prep.workdir is not None
        prep.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log.info("job started: %s", " ".join(prep.shown_command),
                 extra={**fields, "MULTIFLEXI_EXECUTOR": prep.executor})
        spec = JobSpec(
            job_id=job_id, argv=prep.argv, env=prep.env, workdir=prep.workdir,
            timeout=prep.timeout, grace=self.settings.stop_grace_seconds, image=prep.image,
            limits=prep.limits,
            labels={"multiflexi.company": prep.company_slug,
                    "multiflexi.runtemplate_id": str(prep.runtemplate_id)},
            flow=self.hub.flow,
        )
        self.hub.track(out)
        # What the job runs, its environment record, pid and begin: written once the job
        # has run for START_WRITE_DELAY (not awaited), or with its end if it is over by then
        # (one UPDATE instead of two for the many short jobs).
        start = _not_started(prep.shown_command, prep.env_doc)
        timer: asyncio.TimerHandle | None = None

        def write_start() -> None:
            nonlocal start
            if start:
                written = self.db.submit(lifecycle.job_started, job_id, **start)
                start = {}
                if self.bus.has_listeners:  # tell watching clients it runs now
                    self.background(self._announce(job_id, written))

        def started(pid: int | None) -> None:
            nonlocal timer
            start["pid"], start["begin"] = pid, self.clock()
            if self.bus.has_listeners:
                write_start()
            else:
                timer = asyncio.get_running_loop().call_later(START_WRITE_DELAY, write_start)

        try:
            result = await executor.run(spec, out.feed, started, cancel)
        except Exception as exc:  # an executor bug must not leave a job "running"
            log.exception("executor %s failed", prep.executor, extra=fields)
            result = ExecResult("failed_to_start", message=f"executor error: {exc}")
        finally:
            self.hub.untrack(out)
            if timer is not None:
                timer.cancel()
        if result.outcome == "failed_to_start":
            out.system(f"[multiflexi] the job did not start: {result.message}")
        elif result.message:
            out.system(f"[multiflexi] {result.message}")
        out.close()
        return result, out, start or None

    async def _record_end(
        self, job_id: int, state: str, exitcode: int | None, reason: str | None,
        fields: dict[str, Any] | None = None, prepared: dict[str, Any] | None = None,
        prep: Prepared | None = None,
    ) -> None:
        delay = 0.5
        now = self.clock()
        known = None
        if prep is not None and prep.app is not None:  # what the app says this code means
            known = (prep.runtemplate_id, prep.app.exit_code(exitcode))
        while True:  # the end of a job is never given up on: retry until the database is back
            try:
                job = await self.db.write(_finish_and_view, job_id, state, now, exitcode,
                                          reason, self.box, prepared, known,
                                          self.bus.has_listeners)
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
        if self.bus.wants("runtemplate.changed") and job.get("runtemplate_id"):
            # its last result and counters changed
            rt = await self.db.read(_runtemplate_view, job["runtemplate_id"])
            if rt is not None:
                self.publish("runtemplate.changed", rt)

    async def _announce(self, job_id: int, written: Future[None]) -> None:
        """Push that a job started, unless it already ended meanwhile (its end is pushed
        then, and a late "running" must never follow it)."""
        try:
            await asyncio.wrap_future(written)
            view = await self.db.read(job_view, job_id)
        except Exception:
            return  # an event is a courtesy; the job's record is what counts
        run = self.running.get(job_id)
        if run is not None and run.phase == "running" and view["state"] == "running":
            self.publish("job.changed", view)

    # --- control ------------------------------------------------------------------------

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` without waiting for it (kept referenced until it ends)."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def cancel(self, job_id: int) -> bool:
        run = self.running.get(job_id)
        if run is None or run.phase == "ending":
            return False
        run.cancel.set()
        return True

    async def drain(self, grace: float) -> None:
        """Stop taking jobs (claimed ones that wait go back to the queue); let running
        ones finish for ``grace`` s, then stop them."""
        self.accepting = False
        self.draining.set()
        tasks = [r.task for r in self.running.values()]
        if not tasks:
            return
        log.info("waiting up to %g s for %d running job(s)", grace, len(self.executing))
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        if pending:
            log.warning("stopping %d job(s) still running", len(pending))
            for run in list(self.running.values()):
                run.cancel.set()
            await asyncio.wait(pending)


def _not_started(command: list[str], env: dict[str, Any]) -> dict[str, Any]:
    return {"command": command, "env": env, "pid": None, "begin": None}


def _outcome(result: ExecResult) -> tuple[str, str | None]:
    if result.outcome == "exited":
        return ("succeeded" if result.exitcode == 0 else "failed"), None
    if result.outcome == "timed_out":
        return "timed_out", result.message
    if result.outcome == "cancelled":
        return "cancelled", result.message
    return "failed", result.message


def _cancel_requested(s: Any, ids: list[int]) -> list[int]:
    return list(s.scalars(select(Job.id).where(Job.id.in_(ids), Job.cancel_requested.is_(True))))


def _finish_and_view(
    s: Any, job_id: int, state: str, now: datetime, exitcode: int | None, reason: str | None,
    box: SecretBox, prepared: dict[str, Any] | None,
    known: tuple[int | None, ExitCodeDef | None] | None, full_view: bool,
) -> dict[str, Any]:
    """Record the end; the job's whole view only when someone listens for it."""
    if known is None:
        if prepared is not None:  # what it ran (or would have run) goes on record here
            lifecycle.job_started(s, job_id, **prepared)
        job = lifecycle.finish(s, job_id, state=state, now=now, exitcode=exitcode,
                               reason=reason, box=box)
        return job_dict(job)
    final = lifecycle.record_end(s, job_id, state=state, now=now, exitcode=exitcode,
                                 reason=reason, runtemplate_id=known[0], declared=known[1],
                                 box=box, started=prepared)
    if full_view:
        return job_view(s, job_id)
    return {"id": job_id, "state": final, "exitcode": exitcode, "reason": reason}


def _runtemplate_view(s: Any, rt_id: int) -> dict[str, Any] | None:
    try:
        rt = get_runtemplate(s, rt_id)
    except NotFound:  # removed meanwhile
        return None
    return runtemplate_view(s, rt)
