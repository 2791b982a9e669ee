"""The dispatcher: claims due jobs, starts them through their executor, records the end.

A job's way through this node, each step a transition of the store's API
(``store.transitions``), written by the group-committing database thread (dbthread.py):

- **claim** (scheduled -> claimed): only as many as this node has free slots (on SQLite,
  where one daemon serves the database, up to as many again, prepared while they wait) —
  a node never hoards work another node could start now;
- **start** (claimed -> running), committed *before* the process or container is
  launched: a job whose start is not on record was never launched, so a dead node's
  claimed jobs go back to the queue and only its running ones are ``lost``. A start that
  is refused (cancelled, or released meanwhile) launches nothing;
- **end** (running -> final), through the one path that records ends (retries, counters,
  the ``JobEnded`` event). A slot is free as soon as the job's process has ended; its end
  is written while the next job already runs.

A claimed job not started within ``claim_hold_seconds`` goes back to the queue: the node
that claimed it puts it back itself when it waited that long for a slot, and on
PostgreSQL any node releases claims older than that (see cluster.py), which is safe
because a start is guarded by the claim (a released job's start is refused; nothing is
launched). On SQLite no other node could take a job claimed ahead, yet the bound holds
there too: ``claimed`` means "starting", and a job claimed ahead behind long jobs would
otherwise show so for hours (and keep its template's next job pending). After such a
release the node claims nothing ahead until one of its slots frees, so long jobs do not
make it claim and release the same jobs over and over.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from multiflexid.domain.jobstate import IllegalTransition, JobEnded, Verdict, verdict
from multiflexid.events import EventBus
from multiflexid.executors.base import ExecResult, Executor, JobSpec
from multiflexid.executors.jobdir import JobDirs
from multiflexid.health import Health
from multiflexid.output import JobOutput, OutputHub
from multiflexid.services import lifecycle
from multiflexid.services.environment import load_context
from multiflexid.services.jobs import job_view
from multiflexid.services.prepare import LaunchCache, Prepared, context_key, job_dir, prepare_row
from multiflexid.services.runtemplates import get_runtemplate, runtemplate_view
from multiflexid.store.orm import Job
from multiflexid.store.transitions import Ending, JobTransitions

log = logging.getLogger("multiflexid.job")

# Stopping: how long the ends of the jobs stopped at the end of the grace may take to be
# written before multiflexid gives up on an unreachable database (and exits).
END_WRITE_GRACE = 15.0

# A job still running this long after it started gets its launch details recorded on
# their own (else they are written with its end: one UPDATE instead of two).
START_WRITE_DELAY = 0.05

# After a job ends: (prepared job, executor result, the job's output) -> extra work
# (artifacts, result report) done before the job's end is recorded.
PostRun = Callable[[Prepared, ExecResult, JobOutput], Awaitable[None]]
# Before a job is launched, once its directory exists (files a chained job gets).
PreRun = Callable[[Prepared], Awaitable[None]]
Phase = Literal["claimed", "running", "ending"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Running:
    """A job this node has claimed, until its end is recorded."""

    job_id: int
    task: asyncio.Task[None]
    cancel: asyncio.Event
    phase: Phase = "claimed"
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
        transitions: JobTransitions,
        prefetch: bool = False,
        clock: Callable[[], datetime] = _utcnow,
        post_run: list[PostRun] | None = None,
        pre_run: list[PreRun] | None = None,
        lines: Callable[[dict[str, Any], str, str], None] | None = None,
        health: Health | None = None,
    ) -> None:
        self.health = health or Health()
        self.lines = lines  # where output lines go besides the database (journal/stderr)
        self.settings = settings
        # Seconds between looks for work nobody told us of (the daemon stretches it
        # while PostgreSQL's NOTIFY reaches this node)
        self.poll: Callable[[], float] = lambda: settings.poll_seconds
        self.db = db
        self.box = box
        self.hub = hub
        self.bus = bus
        self.executors = executors
        self.tx = transitions
        self.prefetch = prefetch
        self.clock = clock
        self.post_run = post_run or []
        self.pre_run = pre_run or []
        self.running: dict[int, Running] = {}  # every job held by this node
        self.slots = asyncio.Semaphore(settings.max_parallel)
        # Claiming ahead (prefetch) is paused from a release of a job that waited too long
        # for a slot until a slot frees.
        self.ahead = prefetch
        self.wake = asyncio.Event()
        self.draining = asyncio.Event()
        self.abandon_ends = asyncio.Event()  # stopping with the database out: give up
        self.accepting = True
        self.on_change: Callable[[], None] = lambda: None
        self.on_ended: Callable[[], None] = lambda: None  # a job's end (and output) written
        self.publish: Callable[[str, dict[str, Any]], None] = bus.publish
        self._background: set[asyncio.Future[Any]] = set()
        self.cache = LaunchCache()
        self.dirs = JobDirs()
        self._cancel_checked = 0.0
        self._base_env = dict(os.environ)

    @property
    def executing(self) -> list[int]:
        """Jobs whose process (or container) runs now."""
        return sorted(j for j, r in self.running.items() if r.phase == "running")

    # --- the loop -----------------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        woken = True
        while not stopping.is_set():
            try:
                await self._check_cancel_requests()
                # Full: a free slot wakes us. Otherwise sleep until the next queued job is
                # due, at most poll_seconds (the CLI may queue jobs straight into SQLite;
                # socket clients, the scheduler and NOTIFY wake us at once). A timed poll
                # looks first (a read) and claims (a write transaction) only if due.
                idle = self.poll()
                if not woken:
                    idle = await self._idle_time(idle)
                if woken or idle == 0:
                    claimed, room = await self.dispatch_once()
                    idle = self.poll()
                    if len(claimed) < room:
                        idle = await self._idle_time(idle)
            except Exception as exc:  # the database may be down: keep going, say so
                self.health.failed("dispatcher", exc)
                await nap(self.wake, stopping, 2.0)
                woken = True
                continue
            self.health.ok("dispatcher")
            woken = await nap(self.wake, stopping, idle)

    async def _idle_time(self, poll: float) -> float:
        nxt = await self.db.look(lifecycle.next_after)
        if nxt is None:
            return poll
        return max(0.0, min(poll, (nxt - self.clock()).total_seconds()))

    def _held(self) -> int:
        return sum(1 for r in self.running.values() if r.phase != "ending")

    async def dispatch_once(self) -> tuple[list[Any], int]:
        """Claim what fits; (claimed job rows, how many could have been claimed).

        Without prefetch a node claims only for its free slots. With it (SQLite: one
        node) it claims up to one more job per slot, prepared while it waits, and refills
        in bulk — once at most ``max_parallel`` are held — which halves the claims under
        a steady stream of jobs."""
        parallel = self.settings.max_parallel
        room = (2 if self.ahead else 1) * parallel - self._held()
        if not self.accepting or room < (parallel if self.ahead else 1):
            return [], 0
        # Jobs that find a free slot are started in the claim's own transaction when their
        # template's context is cached (one commit instead of two before the launch).
        startable = max(0, parallel - self._held())
        claimed = await self.db.write(self._claim, self.clock(), room, startable)
        # Their directories, made meanwhile in a thread: ready by the time they launch.
        self.dirs.make([job_dir(self.settings.jobs_dir, row[0]) for row, _prep in claimed])
        for row, prep in claimed:
            self._claimed(row, prep)
        if claimed:
            self.on_change()
        return claimed, room

    def _claim(self, s: Any, now: datetime, room: int, startable: int
               ) -> list[tuple[Any, Prepared | None]]:
        """In the writer's transaction: claim up to ``room`` jobs, and start (in the same
        statement) the first ``startable`` of them that are ready — context cached,
        nothing missing: (row, the prepared job if it was started)."""
        ready: dict[int, Prepared] = {}

        def start(rows: list[Any]) -> list[int]:
            for row in rows[:startable]:
                prep = self._prepare_cached(row)
                if prep is not None and not prep.blocked:
                    ready[row[0]] = prep
            return list(ready)

        claimed = self.tx.claim_to_launch(s, now, self.settings.node, room, start)
        return [(row, ready[row[0]] if row[0] in claimed.started else None)
                for row in claimed.rows]

    def _claimed(self, row: Any, started: Prepared | None = None) -> None:
        job_id = row[0]
        cancel = asyncio.Event()
        task = asyncio.create_task(self._execute(row, cancel, started),
                                   name=f"job-{job_id}")
        self.running[job_id] = Running(job_id, task, cancel)
        task.add_done_callback(lambda t: self._done(job_id, t))

    def _done(self, job_id: int, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self.health.report(f"job {job_id}", exc)
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

    def _prepare_cached(self, row: Any) -> Prepared | None:
        """The job ready to launch if its template's context is cached (no I/O), else None."""
        rt_id, key = context_key(row)
        ctx = self.cache.get(rt_id, key) if rt_id is not None else None
        if ctx is None:
            return None
        return prepare_row(row, ctx, self.box, self.settings.jobs_dir, self._base_env,
                           self.cache)

    async def _prepare(self, row: Any) -> Prepared:
        """The job ready to launch: from the template's cached context when it is current,
        else the context is read first (in a database thread)."""
        rt_id, key = context_key(row)
        ctx = self.cache.get(rt_id, key) if rt_id is not None else None
        if ctx is None and rt_id is not None:
            ctx = await self.db.read(load_context, rt_id, self.box, key)
            self.cache.put(ctx)
        return prepare_row(row, ctx, self.box, self.settings.jobs_dir, self._base_env,
                           self.cache)

    async def _execute(self, row: Any, cancel: asyncio.Event,
                       started: Prepared | None = None) -> None:
        """``started``: the job was started with its claim (prepared, its slot free)."""
        job_id = row[0]
        run = self.running[job_id]
        if started is not None:
            run.fields = started.log_fields
            await self.slots.acquire()  # free: it was counted when the job was claimed
            await self._run(run, started, cancel)
            return
        try:
            prep = await self._prepare(row)
        except Exception as exc:
            eid = self.health.report(f"job {job_id}: prepare", exc)
            run.phase = "ending"
            self.dirs.discard(job_dir(self.settings.jobs_dir, job_id))
            await self._record_end(job_id, Verdict(
                "failed", None, f"cannot prepare the job (error id {eid})", None))
            return
        fields = run.fields = prep.log_fields
        if prep.blocked:
            run.phase = "ending"
            self.dirs.discard(job_dir(self.settings.jobs_dir, job_id))
            log.warning("job blocked: %s", prep.blocked, extra=fields)
            await self._write_end(job_id, fields, lambda: self.db.submit(
                self.tx.block, job_id, self.clock(), prep.blocked, prep.env_doc))
            return
        if not await self._acquire_slot(cancel, fields):
            run.phase = "ending"
            self.dirs.discard(job_dir(self.settings.jobs_dir, job_id))
            if cancel.is_set():
                await self._write_end(job_id, fields, lambda: self.db.submit(
                    self._cancel_claimed, job_id, self.clock()))
            else:  # stopping, or waited too long: nobody ran it, it simply waits again
                self.ahead = False
                released = await self.db.write(self.tx.release, [job_id], self.clock(),
                                               self.settings.node)
                if released.done:
                    log.info("job not started; back in the queue", extra=fields)
                else:  # another node released it (and maybe ran it), or it was cancelled
                    log.info("job not started; not put back in the queue: %s", released,
                             extra=fields)
            return
        try:  # on record before anything is launched
            await self.db.write(self.tx.start, job_id, self.settings.node, self.clock())
        except IllegalTransition as exc:
            run.phase = "ending"
            self.slots.release()
            self.dirs.discard(job_dir(self.settings.jobs_dir, job_id))
            log.warning("job not started: %s", exc.message, extra=fields)
            return
        except BaseException:
            run.phase = "ending"
            self.slots.release()
            raise
        await self._run(run, prep, cancel)

    async def _run(self, run: Running, prep: Prepared, cancel: asyncio.Event) -> None:
        """A started job holding its slot: launch it, then record its end. The slot is
        free once the end is handed to the writer (the next job's start is committed with
        it or after it: a node never has more jobs started and not ended on record than
        slots — what a kill -9 leaves for others to mark lost), while it is written."""
        job_id, fields = run.job_id, run.fields
        freed = False

        def free_slot() -> None:
            nonlocal freed
            if not freed:
                freed = True
                run.phase = "ending"
                self.slots.release()
                self.ahead = self.prefetch
                self.wake.set()

        try:
            run.phase = "running"
            self.on_change()
            if self.bus.has_listeners:
                self.background(self._announce(job_id))
            result, out, launch = await self._launch(prep, cancel)
            for hook in self.post_run:
                try:
                    await hook(prep, result, out)
                except Exception as exc:
                    self.health.report("after-job step", exc)
            self.hub.flush_soon()  # the output is written before (or with) the job's end
            meaning = prep.app.exit_code(result.exitcode) if prep.app is not None else None
            ended = verdict(result.outcome, result.exitcode, result.message, meaning)
        except BaseException:
            free_slot()
            raise
        await self._record_end(job_id, ended, fields, launch, submitted=free_slot)
        free_slot()
        self.on_ended()

    def _cancel_claimed(self, s: Any, job_id: int, now: datetime) -> JobEnded:
        return self.tx.cancel(s, [job_id], now, "cancelled before it started").done[0]

    async def _acquire_slot(self, cancel: asyncio.Event, fields: dict[str, Any]) -> bool:
        """Wait for a free slot; False if cancelled, draining, or it waited longer than
        ``claim_hold_seconds`` meanwhile (no slot held then)."""
        if cancel.is_set() or self.draining.is_set():
            return False
        if not self.slots.locked():  # a slot is free: take it without the waiting machinery
            await self.slots.acquire()
            return True
        acquire = asyncio.ensure_future(self.slots.acquire())
        stops = [asyncio.ensure_future(cancel.wait()),
                 asyncio.ensure_future(self.draining.wait())]
        try:
            await asyncio.wait([acquire, *stops], timeout=self.settings.claim_hold_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
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
        missing = None
        if executor is None:
            missing = f"executor {prep.executor!r} is not available on node {self.settings.node}"
        else:
            assert prep.workdir is not None
            try:
                await self.dirs.made(prep.workdir)
            except OSError as exc:
                missing = f"cannot make its directory {prep.workdir}: {exc.strerror or exc}"
        if executor is None or missing is not None or prep.workdir is None:
            out.system(f"[multiflexi] {missing}")
            out.close()
            return (ExecResult("failed_to_start", message=missing), out,
                    _launch_record(prep.shown_command, prep.env_doc))
        for hook in self.pre_run:
            try:
                await hook(prep)
            except Exception as exc:
                self.health.report("before-job step", exc)
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
        # What the job runs, its environment's record, its pid and its process's begin:
        # written once the job has run for START_WRITE_DELAY (not awaited), or with its
        # end if it is over by then.
        launch = _launch_record(prep.shown_command, prep.env_doc)
        timer: asyncio.TimerHandle | None = None

        def write_launch() -> None:
            nonlocal launch
            if launch:
                self.db.submit(self.tx.launched, job_id, lazy=True, **launch)
                launch = {}

        def started(pid: int | None) -> None:
            nonlocal timer
            launch["pid"], launch["begin"] = pid, self.clock()
            timer = asyncio.get_running_loop().call_later(START_WRITE_DELAY, write_launch)

        try:
            result = await executor.run(spec, out.feed, started, cancel)
        except Exception as exc:  # an executor bug must not leave a job "running"
            eid = self.health.report(f"executor {prep.executor}", exc)
            result = ExecResult("failed_to_start", message=f"executor error (error id {eid})")
        finally:
            self.hub.untrack(out)
            if timer is not None:
                timer.cancel()
        if result.outcome == "failed_to_start":
            out.system(f"[multiflexi] the job did not start: {result.message}")
        elif result.message:
            out.system(f"[multiflexi] {result.message}")
        out.close()
        return result, out, launch or None

    async def _record_end(
        self, job_id: int, ended: Verdict, fields: dict[str, Any] | None = None,
        launch: dict[str, Any] | None = None, submitted: Callable[[], None] | None = None,
    ) -> None:
        # Merged: the ends of one commit are one statement. Lazy: it rides with the next
        # job's claim and start (submitted after it, so committed with it or later), or
        # is committed LINGER later when no job follows.
        ending = Ending(job_id, ended, self.clock(), launch)
        await self._write_end(job_id, fields, lambda: self.db.submit_many(
            self.tx.end_many, ending, lazy=True), ended, submitted)

    async def _write_end(self, job_id: int, fields: dict[str, Any] | None,
                         submit: Callable[[], Future[JobEnded]],
                         verdict: Verdict | None = None,
                         submitted: Callable[[], None] | None = None) -> None:
        """Record a job's end (``submit`` hands the writer one of the store's final
        transitions; ``submitted`` is called once it has, the first time), log it and
        tell the watching clients. Never given up on: it is retried until the database
        takes it."""
        delay = 0.5
        while True:
            try:
                pending = submit()
                if submitted is not None:
                    submitted()
                ended = await asyncio.wrap_future(pending)
                break
            except IllegalTransition as exc:  # ended meanwhile (reaped, cancelled...)
                log.warning("job %s: its end was not recorded: %s", job_id, exc.message,
                            extra=fields or {"MULTIFLEXI_JOB_ID": job_id})
                return
            except Exception as exc:
                self.health.failed("job ends", exc)
                if self.abandon_ends.is_set():
                    _log_abandoned_end(job_id, fields, verdict)
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.abandon_ends.wait(), delay)
                delay = min(delay * 2, 10.0)
        self.health.ok("job ends")
        log.log(
            logging.INFO if ended.state == "succeeded" else logging.WARNING,
            "job ended: %s%s%s", ended.state,
            f", exit code {ended.exitcode}" if ended.exitcode is not None else "",
            f" ({ended.reason})" if ended.reason else "",
            extra={**(fields or {"MULTIFLEXI_JOB_ID": job_id}),
                   "MULTIFLEXI_EXIT_CODE": ended.exitcode, "MULTIFLEXI_STATE": ended.state},
        )
        if self.bus.has_listeners:
            await self._tell_ended(ended)

    async def _tell_ended(self, ended: JobEnded) -> None:
        view = await self.db.read(job_view, ended.job_id)
        self.publish("job.changed", view)
        if self.bus.wants("runtemplate.changed") and ended.runtemplate_id is not None:
            # its last result and counters changed
            rt = await self.db.read(_runtemplate_view, ended.runtemplate_id)
            if rt is not None:
                self.publish("runtemplate.changed", rt)

    async def _announce(self, job_id: int) -> None:
        """Push that a job started, unless it already ended meanwhile (its end is pushed
        then, and a late "running" must never follow it)."""
        try:
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
            _done, pending = await asyncio.wait(pending, timeout=END_WRITE_GRACE)
        if pending:  # stopped, but their ends cannot be written (the database is out)
            self.abandon_ends.set()
            await asyncio.wait(pending, timeout=5.0)


def _log_abandoned_end(job_id: int, fields: dict[str, Any] | None, end: Verdict | None
                       ) -> None:
    """Stopping with the database out: the end goes to the journal, and the next start
    finds the job still ``running`` on this node and records it lost."""
    what = (end.state + (f", exit code {end.exitcode}" if end.exitcode is not None else "")
            if end is not None else "its end")
    log.critical("job %s ended (%s) but the database is unreachable while multiflexid "
                 "stops: not recorded; the next start records the job as lost", job_id, what,
                 extra=fields or {"MULTIFLEXI_JOB_ID": job_id})


def _launch_record(command: list[str], env: dict[str, Any]) -> dict[str, Any]:
    return {"command": command, "env": env, "pid": None, "begin": None}


def _cancel_requested(s: Any, ids: list[int]) -> list[int]:
    return list(s.scalars(select(Job.id).where(Job.id.in_(ids), Job.cancel_requested.is_(True))))


def _runtemplate_view(s: Any, rt_id: int) -> dict[str, Any] | None:
    try:
        rt = get_runtemplate(s, rt_id)
    except NotFound:  # removed meanwhile
        return None
    return runtemplate_view(s, rt)

