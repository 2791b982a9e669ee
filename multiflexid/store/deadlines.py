"""The one place a tracked tick's state is written (the states: ``domain.deadline``).

:class:`TickBook` does three things, each inside the caller's transaction:

- :meth:`TickBook.jobs_ended` (an ``on_end`` hook of the job transitions): a job of a
  template with a deadline ended; its tick (the job's own, the tick of the job a retry
  follows, or — for a "run now" — the template's latest tick) is settled by the result.
- :meth:`TickBook.sweep` (the daemon's deadline tracker): starts tracking every tick that
  came (also the ticks that came while no daemon ran, up to :data:`MAX_BACKFILL` per
  template) and marks ``missed`` the open ticks whose deadline passed.
- :func:`stop_tracking`: a template whose deadline, schedule or activity changed forgets
  its open ticks and starts again with its next tick.

Every change of state emits one :class:`~multiflexid.domain.deadline.TickSettled` (its
kind: ``TickMissed``, ``TickLate``...) to the ``on_tick`` hooks, in the transaction (rows
they add commit with the change: an outbox), and leaves it in ``session.info["events"]``
for whoever acts after the commit (the daemon's ``tick_listeners``). Subscribing is one
line: ``core.deadlines.on_tick.append(hook)`` with ``hook(session, event)``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from multiflexi.states import FAILURE_STATES
from multiflexid.domain.deadline import (
    EVENT_OF_STATE,
    Deadline,
    TickSettled,
    after_failure,
    after_success,
)
from multiflexid.domain.jobstate import JobEnded
from multiflexid.domain.schedule import (
    Recurrence,
    last_tick_at_or_before,
    next_tick,
    resolve_timezone,
)

from .orm import JOBS, RUNTEMPLATES, TICKS

log = logging.getLogger(__name__)

TickHook = Callable[[Session, TickSettled], None]

# A template whose daemon was down for long starts tracking at most this many of the ticks
# that came meanwhile (the latest ones); the older ones are said in the log.
MAX_BACKFILL = 100
_MAX_RETRY_CHAIN = 100

_RT_COLUMNS = (RUNTEMPLATES.c.id, RUNTEMPLATES.c.interv, RUNTEMPLATES.c.cron,
               RUNTEMPLATES.c.timezone, RUNTEMPLATES.c.delay, RUNTEMPLATES.c.deadline_time,
               RUNTEMPLATES.c.deadline_after, RUNTEMPLATES.c.deadline_next_tick,
               RUNTEMPLATES.c.company_id, RUNTEMPLATES.c.app_id)
_RT_OF_JOB = select(*_RT_COLUMNS).where(RUNTEMPLATES.c.id == bindparam("rt_id"))
_WITH_DEADLINE = select(RUNTEMPLATES.c.id).where(
    RUNTEMPLATES.c.deadline_time.is_not(None) | RUNTEMPLATES.c.deadline_after.is_not(None))
_JOB_TICK = select(JOBS.c.tick, JOBS.c.retry_of_id, JOBS.c.created_at).where(
    JOBS.c.id == bindparam("job_id"))
_TICK_COLUMNS = (TICKS.c.id, TICKS.c.runtemplate_id, TICKS.c.company_id, TICKS.c.app_id,
                 TICKS.c.tick, TICKS.c.deadline, TICKS.c.state)


def deadline_of(row: Any) -> Deadline | None:
    return Deadline.of(row.deadline_time, row.deadline_after)


def recurrence_of(row: Any) -> Recurrence:
    return Recurrence(row.interv, row.cron, row.timezone, row.delay or 0)


def tick_deadline(row: Any, deadline: Deadline, tick: datetime) -> datetime:
    """The deadline of ``tick`` of the template ``row`` (its delay and zone)."""
    due = tick + timedelta(seconds=row.delay or 0)
    return deadline.for_due(due, resolve_timezone(row.timezone))


def first_tracked_tick(rt: Any, now: datetime) -> datetime | None:
    """Where tracking starts for a template given a deadline (or a new schedule) now: its
    next tick (None when it has no deadline, is inactive or never ticks)."""
    if deadline_of(rt) is None or not rt.active:
        return None
    return next_tick(recurrence_of(rt), now)


def stop_tracking(s: Session, rt_id: int) -> int:
    """Forget the template's open ticks (its deadline, schedule or activity changed: they are
    no longer expected as they were). Settled ones stay in its history."""
    result = s.execute(delete(TICKS).where(TICKS.c.runtemplate_id == rt_id,
                                           TICKS.c.state == "open"))
    return int(getattr(result, "rowcount", 0) or 0)


class TickBook:
    """The store's tick API. ``on_tick`` hooks run inside the transaction of every change."""

    def __init__(self, on_tick: Iterable[TickHook] = (), cache_seconds: float = 2.0) -> None:
        self.on_tick: list[TickHook] = list(on_tick)
        # Which templates have a deadline, read at most every cache_seconds: a job's end
        # costs no query for the many that have none (a round trip each on PostgreSQL).
        self.cache_seconds = cache_seconds
        self._with_deadline: frozenset[int] = frozenset()
        self._read_at = -math.inf

    def _has_deadline(self, s: Session, rt_id: int) -> bool:
        if time.monotonic() - self._read_at > self.cache_seconds:
            self._with_deadline = frozenset(s.connection().execute(_WITH_DEADLINE).scalars())
            self._read_at = time.monotonic()
        return rt_id in self._with_deadline

    # --- a job ended --------------------------------------------------------------------

    def jobs_ended(self, s: Session, events: list[JobEnded]) -> None:
        """Settle the ticks the ended jobs count toward (an ``on_end`` hook)."""
        for event in events:
            self.job_ended(s, event)

    def job_ended(self, s: Session, event: JobEnded) -> None:
        """Settle the tick the ended job counts toward."""
        if event.runtemplate_id is None:
            return
        success = event.state == "succeeded"
        if not success and not (event.state in FAILURE_STATES and event.retry_job_id is None):
            return  # a retry is queued, or blocked/cancelled: the deadline decides
        if not self._has_deadline(s, event.runtemplate_id):
            return  # (given one a moment ago: the tracker settles it, _reconcile, _expire)
        conn = s.connection()
        rt = conn.execute(_RT_OF_JOB, {"rt_id": event.runtemplate_id}).first()
        if rt is None:
            return
        deadline = deadline_of(rt)
        if deadline is None:
            return
        tick, created = self._tick_of(s, event.job_id)
        row = self._row_for(s, rt, deadline, tick, created, success)
        if row is None:
            return
        change = (after_success(row.state, event.at, row.deadline) if success
                  else after_failure(row.state, event.at, row.deadline))
        if change is None:
            return
        self._settle(s, row, change, event.at, event.job_id)

    def _tick_of(self, s: Session, job_id: int) -> tuple[datetime | None, datetime | None]:
        """(the tick the job was made for — through the jobs it retries —, when the first
        of them was created)."""
        conn = s.connection()
        created = None
        current: int | None = job_id
        for _ in range(_MAX_RETRY_CHAIN):
            if current is None:
                break
            row = conn.execute(_JOB_TICK, {"job_id": current}).first()
            if row is None:
                break
            created = row.created_at
            if row.tick is not None:
                return row.tick, created
            current = row.retry_of_id
        return None, created

    def _row_for(self, s: Session, rt: Any, deadline: Deadline, tick: datetime | None,
                 created: datetime | None, success: bool) -> Any:
        """The tick row to settle, locked; made when its tick is tracked and the tracker
        has not got to it yet."""
        query = select(*_TICK_COLUMNS).where(TICKS.c.runtemplate_id == rt.id)
        if s.bind is not None and s.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        if tick is None:  # a "run now": counts toward the template's latest tick
            if not success or created is None:
                return None
            return s.execute(query.where(TICKS.c.tick <= created)
                             .order_by(TICKS.c.tick.desc()).limit(1)).first()
        row = s.execute(query.where(TICKS.c.tick == tick)).first()
        if row is not None or rt.deadline_next_tick is None or tick < rt.deadline_next_tick:
            return row  # found, or a tick from before tracking began
        self._insert(s, rt, deadline, [tick], tick)
        return s.execute(query.where(TICKS.c.tick == tick)).first()

    # --- the tracker ----------------------------------------------------------------------

    def sweep(self, s: Session, now: datetime, limit: int = 1000) -> list[TickSettled]:
        """Track the ticks that came (up to ``limit`` templates per call), then mark missed
        every open tick whose deadline passed. Returns the events of this call."""
        conn = s.connection()
        query = (select(*_RT_COLUMNS)
                 .where(RUNTEMPLATES.c.deadline_next_tick <= now,
                        RUNTEMPLATES.c.active.is_(True))
                 .order_by(RUNTEMPLATES.c.deadline_next_tick).limit(limit))
        if s.bind is not None and s.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=RUNTEMPLATES)
        for rt in conn.execute(query).all():
            self._track(s, rt, now)
        return self._expire(s, now)

    def next_wakeup(self, s: Session) -> datetime | None:
        """When the tracker has something to do next: a tick to track or a deadline."""
        conn = s.connection()
        nxt = conn.execute(select(RUNTEMPLATES.c.deadline_next_tick)
                           .where(RUNTEMPLATES.c.deadline_next_tick.is_not(None),
                                  RUNTEMPLATES.c.active.is_(True))
                           .order_by(RUNTEMPLATES.c.deadline_next_tick).limit(1)).scalar()
        deadline = conn.execute(select(TICKS.c.deadline).where(TICKS.c.state == "open")
                                .order_by(TICKS.c.deadline).limit(1)).scalar()
        return min((t for t in (nxt, deadline) if t is not None), default=None)

    def _track(self, s: Session, rt: Any, now: datetime) -> None:
        deadline = deadline_of(rt)
        rec = recurrence_of(rt)
        start = rt.deadline_next_tick
        try:
            ticks: list[datetime] = []
            cursor = last_tick_at_or_before(rec, now)
            while cursor is not None and cursor >= start and len(ticks) < MAX_BACKFILL:
                ticks.append(cursor)
                cursor = last_tick_at_or_before(rec, cursor - timedelta(microseconds=1))
            following = next_tick(rec, now)
        except ValueError as exc:  # a schedule that no longer parses: stop tracking it
            log.error("run template %s: %s; its deadline is not tracked", rt.id, exc,
                      extra={"MULTIFLEXI_RUNTEMPLATE_ID": rt.id})
            following, ticks = None, []
        else:
            if cursor is not None and cursor >= start:
                log.warning("run template %s: only the latest %d ticks since %s are tracked "
                            "(no daemon ran meanwhile)", rt.id, MAX_BACKFILL,
                            start.isoformat(), extra={"MULTIFLEXI_RUNTEMPLATE_ID": rt.id})
        if ticks and deadline is not None:
            self._insert(s, rt, deadline, ticks, now)
            self._reconcile(s, rt, ticks)
        s.execute(update(RUNTEMPLATES).where(RUNTEMPLATES.c.id == rt.id).values(
            deadline_next_tick=following, updated_at=RUNTEMPLATES.c.updated_at))

    def _insert(self, s: Session, rt: Any, deadline: Deadline, ticks: list[datetime],
                now: datetime) -> None:
        rows = [{"runtemplate_id": rt.id, "company_id": rt.company_id, "app_id": rt.app_id,
                 "tick": t, "deadline": tick_deadline(rt, deadline, t), "state": "open",
                 "created_at": now, "updated_at": now} for t in ticks]
        postgresql = s.bind is not None and s.bind.dialect.name == "postgresql"
        insert = pg_insert(TICKS) if postgresql else sqlite_insert(TICKS)
        s.execute(insert.on_conflict_do_nothing(index_elements=["runtemplate_id", "tick"]),
                  rows)

    def _expire(self, s: Session, now: datetime) -> list[TickSettled]:
        """Open ticks whose deadline came: missed — unless a success that this node's end
        hook did not count is found (the template got its deadline a moment before)."""
        query = (select(*_TICK_COLUMNS).where(TICKS.c.state == "open", TICKS.c.deadline <= now)
                 .order_by(TICKS.c.deadline, TICKS.c.tick))  # ticks in order: streaks
        if s.bind is not None and s.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        events = []
        for row in s.execute(query).all():
            done = self._success_for(s, row)
            change = after_success(row.state, done.end, row.deadline) if done else "missed"
            settled = self._settle(s, row, change or "missed", done.end if done else now,
                                   done.id if done else None, now)
            if settled is not None:
                events.append(settled)
        return events

    def _success_for(self, s: Session, row: Any) -> Any:
        """The first successful job of the tick's template made for it (its own tick) or
        after it (a retry, a run now) that no tick counts yet, or None."""
        counted = aliased(TICKS)
        return s.execute(select(JOBS.c.id, JOBS.c.end).where(
            JOBS.c.runtemplate_id == row.runtemplate_id, JOBS.c.state == "succeeded",
            (JOBS.c.tick == row.tick) | (JOBS.c.tick.is_(None)
                                         & (JOBS.c.created_at >= row.tick)),
            ~exists().where(counted.c.job_id == JOBS.c.id))
            .order_by(JOBS.c.end).limit(1)).first()

    def _reconcile(self, s: Session, rt: Any, ticks: list[datetime]) -> None:
        """Ticks the tracker starts tracking whose own job already succeeded (it ended
        before this node's end hook knew the template had a deadline): settled by it."""
        for row in s.execute(select(*_TICK_COLUMNS).where(
                TICKS.c.runtemplate_id == rt.id, TICKS.c.tick.in_(ticks),
                TICKS.c.state == "open")).all():
            done = s.execute(select(JOBS.c.id, JOBS.c.end).where(
                JOBS.c.runtemplate_id == rt.id, JOBS.c.tick == row.tick,
                JOBS.c.state == "succeeded").order_by(JOBS.c.end).limit(1)).first()
            if done is None:
                continue
            change = after_success(row.state, done.end, row.deadline)
            if change is not None:
                self._settle(s, row, change, done.end, done.id)

    # --- the one path of every change -----------------------------------------------------

    def _settle(self, s: Session, row: Any, state: str, at: datetime,
                job_id: int | None, now: datetime | None = None) -> TickSettled | None:
        """``row`` becomes ``state`` (at ``at``, written at ``now``): the one guarded
        statement of every change, and its event. None when another node changed it."""
        values: dict[str, Any] = {"state": state, "settled_at": at,
                                  "updated_at": now or at}
        if job_id is not None:
            values["job_id"] = job_id
        if state == "missed":
            values["missed_at"] = at
        changed = s.execute(update(TICKS).where(TICKS.c.id == row.id,
                                                TICKS.c.state == row.state)
                            .values(**values).returning(TICKS.c.id)).first()
        if changed is None:
            return None
        event = self._event(s, row, row.state, state, at, job_id)
        s.info.setdefault("events", []).append(event)
        return event

    def _event(self, s: Session, row: Any, previous: str, state: str, at: datetime,
               job_id: int | None) -> TickSettled:
        event = EVENT_OF_STATE[state](
            runtemplate_id=row.runtemplate_id, company_id=row.company_id, app_id=row.app_id,
            tick=row.tick, deadline=row.deadline, state=state, previous=previous, at=at,
            job_id=job_id, tick_id=row.id)
        for hook in self.on_tick:
            hook(s, event)
        return event
