"""The delivery ledger: action runs written with a job's end or a tick's missed or late
deadline, claimed and recorded by the daemons' workers.

:class:`ActionLedger` is a ``JobTransitions`` end hook: inside the transaction that
records a job's end it finds the actions of the job's template (and of its company, if
the template inherits them) whose trigger fires, and adds one ``action_run`` row each —
committed with the end or not at all (an outbox). :class:`TickActionLedger` does the same
as a ``TickBook`` tick hook for the ``missed`` and ``late`` triggers (one row per tick and
action). Workers then claim due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, a lease
everywhere: a run whose node died is taken again when its lease ends) and record each
attempt's result with a guarded statement.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, or_, select, type_coerce, union_all, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from multiflexi.states import FAILURE_STATES, TICK_TRIGGERS
from multiflexid.domain.deadline import TickSettled
from multiflexid.domain.jobstate import JobEnded
from multiflexid.store.orm import ACTION_RUNS, ACTIONS, JOBS, RUNTEMPLATES, TICKS
from multiflexid.store.types import ids_param, in_ids

from .triggers import TICK_TRIGGER_OF, backoff, fires, fires_on_tick, needs_previous, outcome_of

# The enabled actions of the ended jobs' templates and companies: one query per commit.
_ACTIONS_OF = {postgresql: (
    select(ACTIONS.c.id, ACTIONS.c.runtemplate_id, ACTIONS.c.company_id, ACTIONS.c.trigger,
           ACTIONS.c.throttle, ACTIONS.c.module, ACTIONS.c.config)
    .where(ACTIONS.c.enabled.is_(True),
           or_(in_ids(ACTIONS.c.runtemplate_id, "rts", postgresql),
               in_ids(ACTIONS.c.company_id, "cos", postgresql)))
    .order_by(ACTIONS.c.runtemplate_id.is_(None), ACTIONS.c.id)
) for postgresql in (False, True)}
_INHERITS = select(RUNTEMPLATES.c.inherit_actions).where(RUNTEMPLATES.c.id == bindparam("rt"))
_EARLIER = (select(JOBS.c.id, JOBS.c.state)
            .where(JOBS.c.runtemplate_id == bindparam("rt"), JOBS.c.id < bindparam("job"),
                   JOBS.c.state.in_(("succeeded", *FAILURE_STATES)))
            .order_by(JOBS.c.id.desc()).limit(50))
_RETRIED = select(JOBS.c.id).where(JOBS.c.retry_of_id == bindparam("job")).limit(1)
_TICK_BEFORE = (select(TICKS.c.state)
                .where(TICKS.c.runtemplate_id == bindparam("rt"),
                       TICKS.c.tick < bindparam("tick"))
                .order_by(TICKS.c.tick.desc()).limit(1))


def previous_outcome(s: Session, rt_id: int, job_id: int) -> str | None:
    """The template's last final outcome before ``job_id``: a failure that was retried is
    not one (its retry's outcome counts)."""
    conn = s.connection()
    for earlier, state in conn.execute(_EARLIER, {"rt": rt_id, "job": job_id}):
        if state == "succeeded":
            return "success"
        if conn.execute(_RETRIED, {"job": earlier}).first() is None:
            return "failure"
    return None


def _enabled_actions(conn: Connection, rt_ids: set[int], company_ids: set[int], *,
                     ticks: bool) -> list[Any]:
    """The enabled actions of these templates and companies: those of a tick's triggers
    (``ticks``) or those of a job's end."""
    postgresql = conn.dialect.name == "postgresql"
    return [a for a in conn.execute(_ACTIONS_OF[postgresql], {
        "rts": ids_param(rt_ids, postgresql), "cos": ids_param(company_ids, postgresql)})
        if (a.trigger in TICK_TRIGGERS) == ticks]


def _inherited(conn: Connection, rt_id: int, actions: list[Any]) -> list[Any]:
    """``actions`` without its company's defaults when the template opted out of them."""
    if any(a.runtemplate_id is None for a in actions) and not conn.execute(
            _INHERITS, {"rt": rt_id}).scalar():
        return [a for a in actions if a.runtemplate_id is not None]
    return actions


def actions_for(conn: Connection, rt_id: int, company_id: int | None, *, ticks: bool
                ) -> list[Any]:
    """The enabled actions of the template and (when it inherits them) of its company,
    those of a tick's triggers (``ticks``) or of a job's end."""
    return _inherited(conn, rt_id, _enabled_actions(
        conn, {rt_id}, {company_id} if company_id else set(), ticks=ticks))


def _row(a: Any, *, at: datetime, max_attempts: int, runtemplate_id: int,
         company_id: int | None, job_id: int | None = None, tick_id: int | None = None
         ) -> dict[str, Any]:
    return {
        "action_id": a.id, "job_id": job_id, "tick_id": tick_id,
        "runtemplate_id": runtemplate_id, "company_id": company_id, "module": a.module,
        "trigger": a.trigger, "config": a.config, "state": "pending", "attempts": 0,
        "max_attempts": max_attempts, "next_at": at, "created_at": at, "updated_at": at,
    }


@dataclass(frozen=True)
class RunsQueued:
    """A commit queued action runs (an event handed on after the commit, like ``JobEnded``:
    the daemon's action worker is woken by it, not by every job's end). ``job_id``: the
    job whose end queued them; None for a tick's missed or late deadline."""

    job_id: int | None
    runs: int


class ActionLedger:
    """The end hook that writes the outbox rows (registered in ``Core.transitions``)."""

    def __init__(self, max_attempts: Callable[[], int]) -> None:
        self.max_attempts = max_attempts

    def __call__(self, s: Session, events: list[JobEnded]) -> None:
        ended = [e for e in events if e.runtemplate_id is not None]
        if not ended:
            return
        conn = s.connection()
        actions = _enabled_actions(
            conn, {e.runtemplate_id for e in ended if e.runtemplate_id},
            {e.company_id for e in ended if e.company_id}, ticks=False)
        for event in ended:
            mine = [a for a in actions if a.runtemplate_id == event.runtemplate_id
                    or a.company_id == event.company_id]
            if mine:
                self._queue_runs(s, event, mine)

    def _queue_runs(self, s: Session, event: JobEnded, actions: list[Any]) -> None:
        assert event.runtemplate_id is not None
        conn = s.connection()
        actions = _inherited(conn, event.runtemplate_id, actions)
        outcome = outcome_of(event.state, event.retry_job_id is not None)
        if outcome is None or not actions:
            return
        previous = None
        if any(needs_previous(a.trigger, a.throttle) for a in actions):
            previous = previous_outcome(s, event.runtemplate_id, event.job_id)
        rows = [_row(a, at=event.at, max_attempts=self.max_attempts(),
                     runtemplate_id=event.runtemplate_id, company_id=event.company_id,
                     job_id=event.job_id)
                for a in actions if fires(a.trigger, a.throttle, outcome, previous)]
        if rows:
            conn.execute(insert(ACTION_RUNS), rows)
            s.info.setdefault("events", []).append(RunsQueued(event.job_id, len(rows)))


class TickActionLedger:
    """The tick hook that writes the outbox rows of ``missed`` and ``late`` actions
    (registered in ``Core.deadlines``): in the transaction that records the tick's state,
    at most one row per tick and action."""

    def __init__(self, max_attempts: Callable[[], int]) -> None:
        self.max_attempts = max_attempts

    def __call__(self, s: Session, event: TickSettled) -> None:
        if event.state not in TICK_TRIGGER_OF or event.tick_id is None:
            return
        conn = s.connection()
        actions = actions_for(conn, event.runtemplate_id, event.company_id, ticks=True)
        if not actions:
            return
        previous = conn.execute(_TICK_BEFORE, {"rt": event.runtemplate_id,
                                               "tick": event.tick}).scalar()
        rows = [_row(a, at=event.at, max_attempts=self.max_attempts(),
                     runtemplate_id=event.runtemplate_id, company_id=event.company_id,
                     tick_id=event.tick_id)
                for a in actions if fires_on_tick(a.trigger, a.throttle, event.state, previous)]
        if not rows:
            return
        postgresql = s.bind is not None and s.bind.dialect.name == "postgresql"
        statement = pg_insert(ACTION_RUNS) if postgresql else sqlite_insert(ACTION_RUNS)
        conn.execute(statement.on_conflict_do_nothing(
            index_elements=["tick_id", "action_id"]), rows)
        s.info.setdefault("events", []).append(RunsQueued(None, len(rows)))


# --- what the workers do -------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    id: int
    action_id: int | None
    job_id: int | None
    tick_id: int | None
    runtemplate_id: int | None
    company_id: int
    module: str
    trigger: str
    config: dict[str, Any]
    attempts: int
    max_attempts: int

    @property
    def for_tick(self) -> bool:
        return self.trigger in TICK_TRIGGERS

    @property
    def idempotency_key(self) -> str:
        """``<job>-<action>`` (a tick's: ``tick-<tick>-<action>``): the same for every
        attempt (and a retry by hand)."""
        action = self.action_id if self.action_id is not None else f"r{self.id}"
        if self.for_tick:
            return f"tick-{self.tick_id if self.tick_id is not None else 'gone'}-{action}"
        return f"{self.job_id}-{action}"

    @property
    def subject(self) -> str:
        """What it is for, in a log line: ``job 42`` or ``tick 7 (missed)``."""
        if self.for_tick:
            return f"tick {self.tick_id} ({self.trigger})"
        return f"job {self.job_id}"


_CLAIMABLE = or_(
    and_(ACTION_RUNS.c.state == "pending", ACTION_RUNS.c.next_at <= bindparam("now")),
    and_(ACTION_RUNS.c.state == "running", ACTION_RUNS.c.lease_until < bindparam("now")),
)


def claim(s: Session, now: datetime, node: str, limit: int,
          lease: Callable[[str, dict[str, Any]], float]) -> list[Claimed]:
    """Take up to ``limit`` due runs (and runs whose node's lease ran out) for ``node``;
    each gets a lease of ``lease(module, config)`` seconds."""
    if limit <= 0:
        return []
    query = (select(ACTION_RUNS).where(_CLAIMABLE)
             .order_by(ACTION_RUNS.c.next_at, ACTION_RUNS.c.id).limit(limit))
    if s.bind is not None and s.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    conn = s.connection()
    rows = conn.execute(query, {"now": now}).all()
    taken = []
    for r in rows:
        done = conn.execute(
            update(ACTION_RUNS).where(ACTION_RUNS.c.id == r.id, _CLAIMABLE)
            .values(state="running", node=node, attempts=ACTION_RUNS.c.attempts + 1,
                    lease_until=now + timedelta(seconds=lease(r.module, r.config)),
                    started_at=now, updated_at=now)
            .returning(ACTION_RUNS.c.attempts), {"now": now}).first()
        if done is not None:
            taken.append(Claimed(r.id, r.action_id, r.job_id, r.tick_id, r.runtemplate_id,
                                 r.company_id, r.module, r.trigger, dict(r.config or {}),
                                 done.attempts, r.max_attempts))
    return taken


@dataclass(frozen=True)
class Result:
    ok: bool
    message: str
    transient: bool = False  # worth another attempt
    status_code: int | None = None


def record(s: Session, run: Claimed, node: str, result: Result, now: datetime,
           retry_base: float) -> str | None:
    """The attempt's result: succeeded, failed, pending again (a temporary failure with
    attempts left, after a backoff) or gave_up. None when the run is no longer this
    node's (its lease ran out and another node took it)."""
    if result.ok:
        state, next_at = "succeeded", None
    elif not result.transient:
        state, next_at = "failed", None
    elif run.attempts < run.max_attempts:
        state = "pending"
        next_at = now + timedelta(seconds=backoff(run.attempts, retry_base))
    else:
        state, next_at = "gave_up", None
    values: dict[str, Any] = {
        "state": state, "result": result.message[:2000], "status_code": result.status_code,
        "lease_until": None, "updated_at": now,
        "finished_at": None if state == "pending" else now,
    }
    if next_at is not None:
        values["next_at"] = next_at
    done = s.connection().execute(
        update(ACTION_RUNS).where(ACTION_RUNS.c.id == run.id,
                                  ACTION_RUNS.c.state == "running",
                                  ACTION_RUNS.c.node == node)
        .values(**values).returning(ACTION_RUNS.c.id)).first()
    return state if done is not None else None


def release_own(s: Session, node: str | None, now: datetime) -> int:
    """Runs a previous life of this node (``None``: any node — SQLite, one daemon) was
    performing when it stopped: due again now (their idempotency key stays the same)."""
    query = update(ACTION_RUNS).where(ACTION_RUNS.c.state == "running")
    if node is not None:
        query = query.where(ACTION_RUNS.c.node == node)
    result = s.connection().execute(
        query.values(state="pending", next_at=now, lease_until=None, updated_at=now,
                     result="interrupted: the daemon stopped while performing it")
        .returning(ACTION_RUNS.c.id))
    return len(result.all())


# When the next run may be claimed: a pending one is due, or the lease of one being
# performed runs out (its node died). One query (the idle daemon's poll).
_NEXT_DUE = select(type_coerce(func.min(union_all(
    select(func.min(ACTION_RUNS.c.next_at).label("at"))
    .where(ACTION_RUNS.c.state == "pending"),
    select(func.min(ACTION_RUNS.c.lease_until).label("at"))
    .where(ACTION_RUNS.c.state == "running"),
).subquery().c.at), ACTION_RUNS.c.next_at.type))


def next_due(s: Session) -> datetime | None:
    """When the next run may be claimed (see _NEXT_DUE)."""
    at: datetime | None = s.connection().execute(_NEXT_DUE).scalar()
    return at
