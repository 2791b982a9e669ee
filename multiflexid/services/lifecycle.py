"""Database side of the daemon: scheduler ticks, claims, output, artifacts.

Each function is one short transaction, called from the daemon's database thread. A
job's state is written only by the store's transition API (``store.transitions``). The
hot statements are plain table statements (``update(JOBS)``): an ORM-enabled UPDATE
first works out which objects in the session it touches, which costs milliseconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, exists, func, insert, select, update
from sqlalchemy.orm import Session

from multiflexi.states import ACTIVE_STATES, HELD_STATES
from multiflexid.artifacts import Collection
from multiflexid.domain.schedule import Recurrence, catch_up
from multiflexid.store.db import transaction_memo
from multiflexid.store.orm import (
    JOB_OUTPUT,
    JOBS,
    RUNTEMPLATES,
    SCHEDULE,
    Application,
    Artifact,
    Company,
    Job,
)
from multiflexid.store.transitions import JobTransitions
from multiflexid.store.types import held_state

log = logging.getLogger(__name__)

# A tick started this much later than it was due counts as a catch-up after downtime.
CATCH_UP_AFTER = timedelta(seconds=60)


# --- scheduler ------------------------------------------------------------------------------


@dataclass
class TickResult:
    created: list[int] = field(default_factory=list)  # job ids
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (template id, why)
    next_due: datetime | None = None


def _due_templates_statement(postgresql: bool) -> Any:
    rt, app, company = RUNTEMPLATES, Application.__table__, Company.__table__
    query = (
        select(rt.c.id, rt.c.name, rt.c.interv, rt.c.cron, rt.c.timezone, rt.c.delay,
               rt.c.next_schedule, rt.c.app_id, rt.c.company_id, rt.c.executor,
               rt.c.timeout, app.c.enabled.label("app_enabled"),
               company.c.enabled.label("company_enabled"))
        .join(app, app.c.id == rt.c.app_id)
        .join(company, company.c.id == rt.c.company_id)
        .where(rt.c.active.is_(True), rt.c.next_schedule <= bindparam("now"))
        .order_by(rt.c.next_schedule)
        .limit(bindparam("n"))
    )
    if postgresql:  # another node ticking at the same time takes the others
        query = query.with_for_update(skip_locked=True, of=rt)
    return query


_DUE_TEMPLATES = {False: _due_templates_statement(False), True: _due_templates_statement(True)}
_ACTIVE_JOBS = select(JOBS.c.runtemplate_id, JOBS.c.state).where(
    JOBS.c.runtemplate_id.in_(bindparam("ids", expanding=True)),
    JOBS.c.state.in_(ACTIVE_STATES))
# Ticking is no change of the template: updated_at (the launch cache's key) stays.
_TICKED = (update(RUNTEMPLATES).where(RUNTEMPLATES.c.id == bindparam("rt_id"))
           .values(next_schedule=bindparam("next", type_=RUNTEMPLATES.c.next_schedule.type),
                   last_schedule=func.coalesce(
                       bindparam("last", type_=RUNTEMPLATES.c.last_schedule.type),
                       RUNTEMPLATES.c.last_schedule),
                   updated_at=RUNTEMPLATES.c.updated_at))
_NEXT_DUE = (select(RUNTEMPLATES.c.next_schedule)
             .where(RUNTEMPLATES.c.active.is_(True), RUNTEMPLATES.c.next_schedule.is_not(None))
             .order_by(RUNTEMPLATES.c.next_schedule).limit(1))


def tick(s: Session, tx: JobTransitions, now: datetime, limit: int = 1000) -> TickResult:
    """Turn due active templates into jobs: one per template tick, whatever happens (the
    unique (template, tick) constraint; a tick another node took is skipped quietly).

    Set-based: one query finds the due templates, one their active jobs, one INSERT makes
    all the jobs, so ten thousand due templates take seconds, not minutes."""
    result = TickResult()
    postgresql = s.bind is not None and s.bind.dialect.name == "postgresql"
    conn = s.connection()
    due = conn.execute(_DUE_TEMPLATES[postgresql], {"now": now, "n": limit}).all()
    if due:
        active: dict[int, set[str]] = {}
        for rt_id, state in conn.execute(_ACTIVE_JOBS, {"ids": [r.id for r in due]}):
            active.setdefault(rt_id, set()).add(state)
        ticked: list[dict[str, Any]] = []
        new_jobs: list[dict[str, Any]] = []
        plans: dict[Any, Any] = {}  # many due templates share a schedule: compute it once
        for r in due:
            planned = _plan_tick(r, now, active.get(r.id, set()), result, plans)
            ticked.append(planned[0])
            if planned[1] is not None:
                new_jobs.append(planned[1])
        conn.execute(_TICKED, ticked)
        held = {rt_id for rt_id, states in active.items() if states & set(HELD_STATES)}
        made = tx.create_ticks(s, new_jobs, now, held)
        taken = {row.runtemplate_id for row in made}
        for job in new_jobs:  # another node (or an earlier attempt) made these ticks
            if job["runtemplate_id"] not in taken:
                result.skipped.append((job["runtemplate_id"], "job for this tick exists"))
        result.created.extend(row.id for row in made)
    result.next_due = conn.execute(_NEXT_DUE).scalar()
    return result


def next_tick(s: Session) -> datetime | None:
    """When the earliest active template is due (the scheduler's poll, a read)."""
    return s.connection().execute(_NEXT_DUE).scalar()


def _plan_tick(
    r: Any, now: datetime, active: set[str], result: TickResult, plans: dict[Any, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the template's new next/last schedule, the job to make or None)."""
    rec = Recurrence(r.interv, r.cron, r.timezone, r.delay or 0)
    try:
        key = (rec, r.next_schedule)
        if key not in plans:
            plans[key] = catch_up(rec, r.next_schedule, now)
        missed, upcoming = plans[key]
    except ValueError as exc:  # a broken cron or zone: stop scheduling it, say why
        log.error("run template %s: %s; not scheduled", r.id, exc,
                  extra={"MULTIFLEXI_RUNTEMPLATE_ID": r.id})
        result.skipped.append((r.id, str(exc)))
        return {"rt_id": r.id, "next": None, "last": None}, None
    ticked = {"rt_id": r.id, "next": upcoming, "last": missed}
    if missed is None:
        return ticked, None
    why = None
    if not r.app_enabled:
        why = "application disabled"
    elif not r.company_enabled:
        why = "company disabled"
    elif active & {"pending", "scheduled"}:
        # At most one job waits per template: the next tick is coalesced into it.
        why = "a job of this template is already waiting"
    if why:
        result.skipped.append((r.id, why))
        log.info("run template %s: tick %s skipped: %s", r.id, missed.isoformat(), why,
                 extra={"MULTIFLEXI_RUNTEMPLATE_ID": r.id})
        return ticked, None
    late = now - missed > CATCH_UP_AFTER
    return ticked, {
        "runtemplate_id": r.id, "app_id": r.app_id, "company_id": r.company_id,
        "runtemplate_name": r.name,
        "schedule_type": "catch-up" if late else rec.schedule_type,
        "schedule": missed + timedelta(seconds=r.delay or 0), "tick": missed,
        "executor": r.executor, "launched_by": "scheduler", "overrides": {},
        "timeout": r.timeout, "attempt": 1, "created_at": now, "updated_at": now,
    }


# --- dispatcher ---------------------------------------------------------------------------


_NEXT_CLAIMABLE = (
    select(SCHEDULE.c.after)
    .where(~exists().where(JOBS.c.runtemplate_id == SCHEDULE.c.runtemplate_id,
                           held_state(JOBS.c.state)))
    .order_by(SCHEDULE.c.after).limit(1))


def next_after(s: Session) -> datetime | None:
    """When the earliest queued job that may be claimed becomes due (one waiting behind
    its template's running job is claimable when that ends: the node running it is
    woken by its end, the others by a NOTIFY)."""
    return s.scalar(_NEXT_CLAIMABLE)


def job_fields(s: Session, job: Job) -> dict[str, Any]:
    """The journal fields that tell whose job a log line is about."""
    known = transaction_memo(s, "job_fields")  # (one lookup per transaction)
    key = (job.company_id, job.app_id)
    if key not in known:
        company, app = s.get(Company, job.company_id), s.get(Application, job.app_id)
        known[key] = (company.slug if company else None, app.name if app else None)
    slug, name = known[key]
    return {
        "MULTIFLEXI_JOB_ID": job.id,
        "MULTIFLEXI_RUNTEMPLATE_ID": job.runtemplate_id,
        "MULTIFLEXI_COMPANY": slug,
        "MULTIFLEXI_APP": name,
    }


def save_artifacts(s: Session, job_id: int, collection: Collection, now: datetime) -> None:
    for f in collection.files:
        s.add(Artifact(
            job_id=job_id, name=f.name, filename=f.filename, content_type=f.content_type,
            size=f.size, sha256=f.sha256, content=f.content, skipped=f.skipped, note=f.note,
            created_at=now,
        ))
    if collection.report is not None:
        s.execute(update(JOBS).where(Job.id == job_id).values(
            report_status=collection.report.status,
            report_message=collection.report.message,
            report_metrics=collection.report.metrics,
        ))


_ADD_OUTPUT = insert(JOB_OUTPUT)
_OUTPUT_SIZE = (update(JOBS).where(JOBS.c.id == bindparam("job_id"))
                .values(output_bytes=JOBS.c.output_bytes + bindparam("added"),
                        output_dropped=JOBS.c.output_dropped + bindparam("dropped")))


def write_output(s: Session, rows: list[dict[str, Any]], sizes: dict[int, tuple[int, int]]) -> None:
    """Insert output chunks and bump each job's byte counters: (bytes, dropped)."""
    conn = s.connection()
    if rows:
        conn.execute(_ADD_OUTPUT, rows)
    if sizes:
        conn.execute(_OUTPUT_SIZE, [{"job_id": j, "added": a, "dropped": d}
                                    for j, (a, d) in sizes.items()])
