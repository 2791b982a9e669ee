"""The daemon's action worker: performs the ledger's due runs, never in the dispatcher's way.

It claims only as many runs as it has slots (``action_workers``), each with a lease; runs
are performed in tasks of their own (HTTP and Apprise in threads, commands as child
processes), so a slow webhook delays nothing but itself. Each attempt's result is written
back (retried until the database takes it), logged to the journal with
``MULTIFLEXI_JOB_ID`` (a tick's run: ``MULTIFLEXI_TICK_ID``) and ``MULTIFLEXI_ACTION``,
and a temporary failure is due again
after a backoff. On start, the runs a previous life of this node was performing are due
again at once (same idempotency key: a receiver that saw the first attempt can tell).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from multiflexi.settings import Settings
from multiflexid.aio import nap
from multiflexid.crypto import SecretBox
from multiflexid.dbthread import DbThread
from multiflexid.health import Health
from multiflexid.store.transitions import JobTransitions

from . import ledger, spec
from .ledger import Claimed, Result
from .perform import lease_seconds, perform
from .performers import Context
from .summary import job_summary, tick_summary

log = logging.getLogger("multiflexid.actions")


def _now() -> datetime:
    return datetime.now(UTC)


class ActionWorker:
    def __init__(self, settings: Settings, db: DbThread, box: SecretBox, tx: JobTransitions,
                 health: Health, *, one_node: bool,
                 on_jobs: Callable[[list[int]], None] = lambda _ids: None,
                 on_template: Callable[[int], None] = lambda _rt: None) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.tx = tx
        self.health = health
        self.one_node = one_node
        self.on_jobs = on_jobs
        self.on_template = on_template
        self.wake = asyncio.Event()
        self.poll: Callable[[], float] = lambda: settings.poll_seconds  # (as the dispatcher's)
        self.running: dict[int, asyncio.Task[None]] = {}
        self.performed = 0

    async def run(self, stopping: asyncio.Event) -> None:
        node = self.settings.node
        try:
            again = await self.db.write(ledger.release_own, None if self.one_node else node,
                                        _now())
            if again:
                log.warning("%d action run(s) interrupted by the last stop: due again", again)
        except Exception as exc:
            self.health.failed("actions", exc)
        while not stopping.is_set():
            idle = self.poll()
            try:
                free = self.settings.action_workers - len(self.running)
                # A read first: a write transaction only when a run is due (an idle
                # daemon polls with reads).
                nxt = await self.db.look(ledger.next_due) if free > 0 else None
                if nxt is not None and nxt <= _now():
                    for run in await self.db.write(ledger.claim, _now(), node, free,
                                                   lease_seconds):
                        task = asyncio.create_task(self._perform(run),
                                                   name=f"action-run-{run.id}")
                        self.running[run.id] = task
                        task.add_done_callback(self._done_callback(run.id))
                    nxt = await self.db.read(ledger.next_due)
                if nxt is not None:
                    idle = max(0.0, min(idle, (nxt - _now()).total_seconds()))
            except Exception as exc:
                self.health.failed("actions", exc)
                await nap(self.wake, stopping, 2.0)
                continue
            self.health.ok("actions")
            await nap(self.wake, stopping, idle)
        await self._drain()

    def _done_callback(self, run_id: int) -> Callable[[asyncio.Task[None]], None]:
        return lambda _task: self._done(run_id)

    def _done(self, run_id: int) -> None:
        task = self.running.pop(run_id, None)
        if task is not None and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            self.health.report(f"action run {run_id}", exc)
        self.wake.set()

    async def _drain(self, grace: float = 5.0) -> None:
        """Let runs under way finish for a moment; the rest are due again at the next start."""
        tasks = list(self.running.values())
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                await task

    def _fields(self, run: Claimed, summary: dict[str, Any] | None) -> dict[str, Any]:
        """The journal fields of a run's lines: a job's has ``MULTIFLEXI_JOB_ID``, a
        tick's ``MULTIFLEXI_TICK_ID``; none is sent empty."""
        fields: dict[str, Any] = {
            "MULTIFLEXI_JOB_ID": run.job_id, "MULTIFLEXI_TICK_ID": run.tick_id,
            "MULTIFLEXI_ACTION": run.module, "MULTIFLEXI_ACTION_TRIGGER": run.trigger,
            "MULTIFLEXI_ACTION_ID": run.action_id, "MULTIFLEXI_ACTION_RUN_ID": run.id,
            "MULTIFLEXI_RUNTEMPLATE_ID": run.runtemplate_id,
        }
        if summary is not None:
            fields["MULTIFLEXI_COMPANY"] = summary["company"]["slug"]
        return {k: v for k, v in fields.items() if v is not None}

    async def _perform(self, run: Claimed) -> None:
        summary = None
        try:
            config = ledger_config(run, self.box)
            secrets = spec.secret_values(run.module, config)
            what = tick_summary if run.for_tick else job_summary
            summary = await self.db.read(what, run.tick_id if run.for_tick else run.job_id,
                                         trigger=run.trigger,
                                         action={"id": run.action_id, "module": run.module,
                                                 "run_id": run.id, "attempt": run.attempts},
                                         secrets=secrets)
        except LookupError as exc:
            result = Result(False, str(exc))
        except Exception as exc:  # the key file, the database: try again later
            from multiflexid.health import describe

            result = Result(False, describe(exc), transient=True)
        else:
            ctx = Context(summary=summary, config=config, idempotency_key=run.idempotency_key,
                          secrets=secrets, write=self._write, on_jobs=self.on_jobs,
                          on_template=self.on_template)
            result = await perform(run.module, ctx, self.tx, self.box)
        state = await self._record(run, result)
        self.performed += 1
        fields = self._fields(run, summary)
        if state is None:
            log.warning("action %s (run %d) for %s: another node took it over; its "
                        "result is not recorded here", run.module, run.id, run.subject,
                        extra=fields)
            return
        more = ""
        if state == "pending":
            more = f"; attempt {run.attempts} of {run.max_attempts}, trying again later"
        log.log(logging.INFO if result.ok else logging.WARNING,
                "action %s (run %d) for %s: %s: %s%s", run.module, run.id, run.subject,
                state, result.message, more,
                extra={**fields, "MULTIFLEXI_ACTION_STATE": state})

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.db.write(fn, *args)

    async def _record(self, run: Claimed, result: Result) -> str | None:
        delay = 0.5
        while True:
            try:
                return await self.db.write(ledger.record, run, self.settings.node, result,
                                           _now(), self.settings.action_retry_seconds)
            except Exception as exc:  # the database is away: the result must not be lost
                self.health.failed("actions", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


def ledger_config(run: Claimed, box: SecretBox) -> dict[str, Any]:
    from multiflexid.services.actions import decode_config

    return decode_config(run.config, box)
