"""What monitoring reads from the database: job counts and durations, the queue, each
template's last success and current tick, deadline counts, nodes, failed action deliveries.

Shared by the daemon's Prometheus collector, ``multiflexi-cli check`` and the Zabbix
items. Everything here is one read transaction's worth of aggregate queries; nothing
scans the whole job history more than once per process (:class:`JobAggregates`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, exists, func, inspect, select
from sqlalchemy.orm import Session, aliased

from multiflexi.states import ACTIVE_STATES, FAILURE_STATES, FINAL_STATES
from multiflexid.domain.deadline import FINAL_TICK_STATES
from multiflexid.presenters import deadline_text
from multiflexid.store.orm import (
    JOBS,
    TICKS,
    Application,
    Company,
    Job,
    Node,
    RunTemplate,
    Schedule,
)
from multiflexid.store.types import held_state

from .deadlines import current_ticks

# Job duration histogram buckets, seconds (jobs run from seconds to hours).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                    7200.0, 21600.0, 86400.0)
# A job created this recently may still be committing on another node: not folded yet.
_SETTLE = timedelta(minutes=5)


def names(s: Session) -> tuple[dict[int, str], dict[int, str]]:
    """(company id -> slug, application id -> name): the labels of every figure."""
    return (dict(s.execute(select(Company.id, Company.slug)).all()),
            dict(s.execute(select(Application.id, Application.name)).all()))


# --- jobs by company, application and final state -----------------------------------------


@dataclass
class JobCell:
    """Jobs of one (company, application, final state): how many, and the durations of
    those that ran (cumulative bucket counts as Prometheus histograms want them)."""

    count: int = 0
    timed: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))

    def add(self, other: JobCell) -> None:
        self.count += other.count
        self.timed += other.timed
        self.seconds += other.seconds
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]


Cells = dict[tuple[int, int, str], JobCell]


def _duration(s: Session) -> Any:
    if s.bind is not None and s.bind.dialect.name == "postgresql":
        return func.extract("epoch", JOBS.c.end - JOBS.c.begin)
    return (func.julianday(JOBS.c.end) - func.julianday(JOBS.c.begin)) * 86400.0


def _cells(s: Session, low: int, high: int | None) -> Cells:
    dur = _duration(s)
    # The range of the primary key is what the database should read: no condition on the
    # state (an index on it would lead to every final job; unfinished ones are dropped
    # below), and groups by expressions no index has (SQLite would walk a whole index on
    # company_id to get its groups in order).
    by_company = (JOBS.c.company_id + 0).label("company")
    by_app = (JOBS.c.app_id + 0).label("app")
    columns = [by_company, by_app, JOBS.c.state, func.count(), func.count(JOBS.c.begin),
               func.coalesce(func.sum(dur), 0.0)]
    columns += [func.sum(case((dur <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    query = select(*columns).where(JOBS.c.id >= low)
    if high is not None:
        query = query.where(JOBS.c.id < high)
    out: Cells = {}
    for row in s.execute(query.group_by(by_company, by_app, JOBS.c.state)):
        company, app, state, count, timed, seconds, *buckets = row
        if state not in FINAL_STATES:
            continue
        out[(company, app, state)] = JobCell(int(count), int(timed), float(seconds or 0),
                                             [int(b or 0) for b in buckets])
    return out


class JobAggregates:
    """Counts and durations of ended jobs, from the database, cheap to refresh.

    A job's final state never changes, so the jobs below the oldest one not final yet are
    counted once and kept (``low``); each refresh only aggregates the jobs from there on.
    Counters therefore survive restarts of the daemon and agree on every node."""

    def __init__(self) -> None:
        self.low = 0
        self.fixed: Cells = {}
        self._lock = threading.Lock()

    def refresh(self, s: Session, now: datetime) -> Cells:
        with self._lock:
            high = s.scalar(select(func.min(JOBS.c.id)).where(
                JOBS.c.state.in_(ACTIVE_STATES), JOBS.c.id >= self.low))
            if high is None:
                high = (s.scalar(select(func.max(JOBS.c.id))) or 0) + 1
            recent = s.scalar(select(func.min(JOBS.c.id)).where(
                JOBS.c.id >= self.low, JOBS.c.id < high, JOBS.c.created_at >= now - _SETTLE))
            if recent is not None:
                high = recent
            if high > self.low:
                for key, cell in _cells(s, self.low, high).items():
                    self.fixed.setdefault(key, JobCell()).add(cell)
                self.low = high
            total: Cells = {k: _copy(v) for k, v in self.fixed.items()}
            for key, cell in _cells(s, self.low, None).items():
                total.setdefault(key, JobCell()).add(cell)
            return total


def _copy(cell: JobCell) -> JobCell:
    return JobCell(cell.count, cell.timed, cell.seconds, list(cell.buckets))


# --- queue ------------------------------------------------------------------------------------


def queue_figures(s: Session, now: datetime, company_id: int | None = None,
                  runtemplate_id: int | None = None) -> tuple[int, float]:
    """(jobs queued, seconds the oldest job that could start now has waited past its due
    time: 0 when none waits). A job waiting behind its template's running job does not
    count as lag (it is not the queue's fault)."""
    held = aliased(Job)
    queued = select(func.count()).select_from(Schedule)
    oldest = select(func.min(Schedule.after)).where(
        Schedule.after <= now,
        ~exists().where(held.runtemplate_id == Schedule.runtemplate_id,
                        held_state(held.state)))
    if company_id is not None:
        mine = select(Job.id).where(Job.company_id == company_id)
        queued = queued.where(Schedule.job_id.in_(mine))
        oldest = oldest.where(Schedule.job_id.in_(mine))
    if runtemplate_id is not None:
        queued = queued.where(Schedule.runtemplate_id == runtemplate_id)
        oldest = oldest.where(Schedule.runtemplate_id == runtemplate_id)
    first = s.scalar(oldest)
    return int(s.scalar(queued) or 0), max(0.0, (now - first).total_seconds()) if first else 0.0


# --- templates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateFigures:
    id: int
    name: str
    company_id: int
    app_id: int
    active: bool
    interv: str
    last_success: datetime | None
    tick: dict[str, Any] | None  # the current tick (services.deadlines)
    last_job: dict[str, Any] | None = None


def template_figures(s: Session, now: datetime, ids: Iterable[int] | None = None,
                     *, last_jobs: bool = False) -> list[TemplateFigures]:
    query = select(RunTemplate).order_by(RunTemplate.id)
    if ids is not None:
        query = query.where(RunTemplate.id.in_(list(ids)))
    rts = list(s.scalars(query))
    ticks = current_ticks(s, rts, now)
    lasts = _last_jobs(s, [rt.id for rt in rts]) if last_jobs else {}
    return [TemplateFigures(rt.id, rt.name, rt.company_id, rt.app_id, rt.active, rt.interv,
                            rt.last_success_at, ticks.get(rt.id), lasts.get(rt.id))
            for rt in rts]


def _last_jobs(s: Session, rt_ids: list[int]) -> dict[int, dict[str, Any]]:
    if not rt_ids:
        return {}
    latest = (select(Job.runtemplate_id, func.max(Job.id).label("id"))
              .where(Job.runtemplate_id.in_(rt_ids)).group_by(Job.runtemplate_id).subquery())
    rows = s.execute(select(Job.runtemplate_id, Job.id, Job.state, Job.exitcode, Job.end)
                     .join(latest, latest.c.id == Job.id))
    return {r.runtemplate_id: {"id": r.id, "state": r.state, "exitcode": r.exitcode,
                               "end": r.end} for r in rows}


# --- deadlines ------------------------------------------------------------------------------


def tick_counts(s: Session) -> tuple[dict[tuple[int, int, str], int], dict[tuple[int, int], int]]:
    """({(company, app, state): ticks settled for good}, {(company, app): ticks ever
    missed}) — both only grow (a missed tick done late is still counted as missed)."""
    final = {(c, a, st): int(n) for c, a, st, n in s.execute(
        select(TICKS.c.company_id, TICKS.c.app_id, TICKS.c.state, func.count())
        .where(TICKS.c.state.in_(FINAL_TICK_STATES))
        .group_by(TICKS.c.company_id, TICKS.c.app_id, TICKS.c.state))}
    missed = {(c, a): int(n) for c, a, n in s.execute(
        select(TICKS.c.company_id, TICKS.c.app_id, func.count())
        .where(TICKS.c.missed_at.is_not(None))
        .group_by(TICKS.c.company_id, TICKS.c.app_id))}
    return final, missed


# --- failures in a window ------------------------------------------------------------------


def failed_jobs(s: Session, since: datetime, *, company_id: int | None = None,
                runtemplate_id: int | None = None) -> list[dict[str, Any]]:
    """Jobs that ended in a failure state since ``since`` with no retry after them (a
    failure a retry took over is not one yet), oldest first."""
    query = (select(Job.id, Job.runtemplate_id, Job.runtemplate_name, Job.state, Job.end,
                    Job.company_id)
             .where(Job.state.in_(FAILURE_STATES), Job.end >= since).order_by(Job.id))
    if company_id is not None:
        query = query.where(Job.company_id == company_id)
    if runtemplate_id is not None:
        query = query.where(Job.runtemplate_id == runtemplate_id)
    rows = s.execute(query).all()
    if not rows:
        return []
    retried = set(s.scalars(select(Job.retry_of_id).where(  # retries come after: ids above
        Job.id > rows[0].id, Job.retry_of_id.in_([r.id for r in rows]))))
    return [{"id": r.id, "runtemplate_id": r.runtemplate_id, "name": r.runtemplate_name,
             "state": r.state, "end": r.end} for r in rows if r.id not in retried]


# --- nodes, actions -------------------------------------------------------------------------


def node_figures(s: Session) -> list[tuple[str, datetime, datetime, str]]:
    """(name, last heartbeat, lease until, state) of every node."""
    return [(r.name, r.heartbeat_at, r.lease_until, r.state)
            for r in s.execute(select(Node.name, Node.heartbeat_at, Node.lease_until,
                                      Node.state).order_by(Node.name))]


_LEDGER = "action_run"


def failed_deliveries(s: Session) -> dict[int, int]:
    """Action deliveries that failed for good, by company id — read from the actions'
    delivery ledger (table ``action_run``, states ``failed`` and ``gave_up``) when this
    database has one; {} when it does not (the actions feature is not installed)."""
    conn = s.connection()
    if not inspect(conn).has_table(_LEDGER):
        return {}
    from sqlalchemy import column, table

    ledger = table(_LEDGER, column("company_id"), column("state"))
    return {int(c): int(n) for c, n in s.execute(
        select(ledger.c.company_id, func.count()).where(
            and_(ledger.c.state.in_(("failed", "gave_up"))))
        .group_by(ledger.c.company_id))}


# --- one template's status, for Zabbix items --------------------------------------------

# The original's value map of a template's last execution: 0 success, 1 failed, 2 running.
LAST_STATUS = {"succeeded": 0, "running": 2, "claimed": 2, "scheduled": 2, "pending": 2}


def _period(rt: RunTemplate, now: datetime) -> float | None:
    """Seconds between the template's two latest ticks (None: it does not tick)."""
    from multiflexid.domain.schedule import ScheduleError, last_tick_at_or_before
    from multiflexid.store.deadlines import recurrence_of

    try:
        rec = recurrence_of(rt)
        latest = last_tick_at_or_before(rec, now)
        before = last_tick_at_or_before(rec, latest - timedelta(microseconds=1)) \
            if latest else None
    except (ScheduleError, ValueError):
        return None
    if latest is None or before is None:
        return None
    return (latest - before).total_seconds()


def template_status(s: Session, rt: RunTemplate, now: datetime) -> dict[str, Any]:
    """Everything a Zabbix item asks about one template, as numbers where it can (0 for
    "never", -1 for "no exit code"): last state and exit code, last success and its age,
    the current tick against its deadline, and ``stale``: an active, ticking template
    without a success in two periods (plus its delay) — or never, that long after it was
    created."""
    [fig] = template_figures(s, now, [rt.id], last_jobs=True)
    last = fig.last_job or {}
    state = last.get("state")
    tick = fig.tick or {}
    period = _period(rt, now) if rt.active else None
    since = fig.last_success or rt.created_at
    stale = bool(period and (now - since).total_seconds() > 2 * period + (rt.delay or 0))
    return {
        "id": rt.id, "name": rt.name, "active": int(rt.active),
        "last_state": state or "none",
        "last_status": LAST_STATUS.get(state or "", 1) if state else -1,
        "last_exitcode": last.get("exitcode") if last.get("exitcode") is not None else -1,
        "last_end": int(last["end"].timestamp()) if last.get("end") else 0,
        "last_success": int(fig.last_success.timestamp()) if fig.last_success else 0,
        "last_success_age": int((now - fig.last_success).total_seconds())
        if fig.last_success else -1,
        "deadline": deadline_text(rt.deadline_time, rt.deadline_after) or "",
        "tick_state": tick.get("state") or "",
        "late": int(tick.get("state") == "fulfilled_late"),
        "missed": int(bool(tick.get("late"))),
        "stale": int(stale),
        "next_schedule": int(rt.next_schedule.timestamp()) if rt.next_schedule else 0,
    }
