"""Database side of the daemon: scheduler ticks, claims, job starts and ends, recovery.

Each function is one short transaction, called from the daemon's database thread. The
hot ones use plain table statements (``update(JOBS)``): an ORM-enabled UPDATE
first works out which objects in the session it touches, which costs milliseconds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, insert, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from multiflexid.artifacts import Collection
from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import ExitCodeDef
from multiflexid.domain.retry import RETRYABLE_STATES, may_retry, retry_gap
from multiflexid.domain.schedule import Recurrence, catch_up
from multiflexid.store.orm import (
    JOB_OUTPUT,
    JOBS,
    RUNTEMPLATES,
    SCHEDULE,
    AppExitCode,
    Application,
    Artifact,
    Company,
    Job,
    RunTemplate,
    Schedule,
)

from .jobs import create_job, decrypt_overrides, notify_nodes

log = logging.getLogger(__name__)

# A tick started this much later than it was due counts as a catch-up after downtime.
CATCH_UP_AFTER = timedelta(seconds=60)
RUNNING = "running"


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
    JOBS.c.state.in_(("pending", "scheduled", RUNNING)))
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


# SQLite: one executemany, a tick that exists already is skipped by the unique constraint.
_NEW_JOBS_SQLITE = (sqlite_insert(JOBS)
                    .on_conflict_do_nothing(index_elements=["runtemplate_id", "tick"])
                    .returning(JOBS.c.id, JOBS.c.runtemplate_id, JOBS.c.schedule))

# PostgreSQL: all of a tick's jobs in one statement from arrays (a multi-row VALUES of a
# thousand rows costs the driver more to build than the server to run).
_NEW_JOBS_PG = text("""
    INSERT INTO job (runtemplate_id, app_id, company_id, runtemplate_name, state,
                     schedule_type, schedule, tick, executor, launched_by, overrides,
                     timeout, attempt, cancel_requested, output_bytes, output_dropped,
                     created_at, updated_at)
    SELECT rt, app, co, name, st, kind, due, tk, ex, 'scheduler', '{}'::json, tmo, 1, false,
           0, 0, :now, :now
      FROM unnest(CAST(:rt AS integer[]), CAST(:app AS integer[]), CAST(:co AS integer[]),
                  CAST(:name AS varchar[]), CAST(:st AS varchar[]), CAST(:kind AS varchar[]),
                  CAST(:due AS timestamptz[]), CAST(:tk AS timestamptz[]),
                  CAST(:ex AS varchar[]), CAST(:tmo AS integer[]))
           AS t(rt, app, co, name, st, kind, due, tk, ex, tmo)
    ON CONFLICT (runtemplate_id, tick) DO NOTHING
    RETURNING id, runtemplate_id, schedule
""")


def _insert_jobs_pg(conn: Any, jobs: list[dict[str, Any]]) -> list[Any]:
    column = {"rt": "runtemplate_id", "app": "app_id", "co": "company_id",
              "name": "runtemplate_name", "st": "state", "kind": "schedule_type",
              "due": "schedule", "tk": "tick", "ex": "executor", "tmo": "timeout"}
    params: dict[str, Any] = {k: [j[c] for j in jobs] for k, c in column.items()}
    params["now"] = jobs[0]["created_at"]
    return list(conn.execute(_NEW_JOBS_PG, params).all())


def tick(s: Session, now: datetime, box: SecretBox, limit: int = 1000) -> TickResult:
    """Turn due active templates into jobs: one per template tick, whatever happens (the
    unique (template, tick) constraint; a tick another node took is skipped quietly).

    Set-based: one query finds the due templates, one their waiting and running jobs,
    one INSERT makes all the jobs, so ten thousand due templates take seconds, not
    minutes. ``box`` is unused here (scheduled jobs carry no one-off overrides) but kept
    for the callers' symmetry with the other writes."""
    del box
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
        if new_jobs:
            made = (_insert_jobs_pg(conn, new_jobs) if postgresql
                    else conn.execute(_NEW_JOBS_SQLITE, new_jobs).all())
            taken = {row.runtemplate_id for row in made}
            for job in new_jobs:  # another node (or an earlier attempt) made these ticks
                if job["runtemplate_id"] not in taken:
                    result.skipped.append((job["runtemplate_id"], "job for this tick exists"))
            if made:
                conn.execute(insert(SCHEDULE), [
                    {"job_id": row.id, "runtemplate_id": row.runtemplate_id,
                     "after": row.schedule, "created_at": now} for row in made])
                result.created.extend(row.id for row in made)
                notify_nodes(s)
    result.next_due = conn.execute(_NEXT_DUE).scalar()
    return result


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
        "state": "pending" if RUNNING in active else "scheduled",
        "schedule_type": "catch-up" if late else rec.schedule_type,
        "schedule": missed + timedelta(seconds=r.delay or 0), "tick": missed,
        "executor": r.executor, "launched_by": "scheduler", "overrides": {},
        "timeout": r.timeout, "attempt": 1, "created_at": now, "updated_at": now,
    }


# --- dispatcher ---------------------------------------------------------------------------


def _due_statement(postgresql: bool) -> Any:
    other = aliased(Job)
    query = (
        select(Schedule.id, Schedule.job_id, Schedule.runtemplate_id)
        .where(Schedule.after <= bindparam("now"))
        .where(~exists().where(other.runtemplate_id == Schedule.runtemplate_id,
                               other.state == RUNNING))
        .order_by(Schedule.after, Schedule.id)
        .limit(bindparam("n"))
    )
    if postgresql:
        query = query.with_for_update(skip_locked=True, of=Schedule)
    return query


# Built once: the claim runs for every free slot, and building it costs more than running.
_DUE = {False: _due_statement(False), True: _due_statement(True)}


def claim(s: Session, now: datetime, node: str, limit: int) -> list[int]:
    """Take up to ``limit`` due jobs for this node: at most one per template, and none of
    a template that has a job running (no overlap)."""
    if limit <= 0:
        return []
    postgresql = s.bind is not None and s.bind.dialect.name == "postgresql"
    candidates: list[tuple[int, int, int | None]] = []
    templates: set[int] = set()
    for sched_id, job_id, rt_id in s.execute(_DUE[postgresql], {"now": now, "n": limit * 4}):
        if rt_id is not None:
            if rt_id in templates:
                continue
            templates.add(rt_id)
        candidates.append((sched_id, job_id, rt_id))
    if templates and postgresql:
        # Several nodes claim at once: lock the templates (skipping those another node is
        # claiming right now), then look again, in a fresh statement that sees what other
        # nodes committed since this transaction's first query.
        locked = set(s.scalars(select(RunTemplate.id).where(RunTemplate.id.in_(templates))
                               .with_for_update(skip_locked=True)))
        busy = set(s.scalars(select(Job.runtemplate_id).where(
            Job.runtemplate_id.in_(locked), Job.state == RUNNING)))
        candidates = [c for c in candidates
                      if c[2] is None or (c[2] in locked and c[2] not in busy)]
    picked = [(sched_id, job_id) for sched_id, job_id, _ in candidates[:limit]]
    if not picked:
        return []
    job_ids = [j for _, j in picked]
    conn = s.connection()
    conn.execute(_UNQUEUE, {"ids": [i for i, _ in picked]})
    conn.execute(_TAKE, {"ids": job_ids, "node": node, "now": now})
    return job_ids


# The statements of every job's way through the daemon, built once (see the module doc).
_UNQUEUE = delete(SCHEDULE).where(SCHEDULE.c.id.in_(bindparam("ids", expanding=True)))
_TAKE = (update(JOBS).where(JOBS.c.id.in_(bindparam("ids", expanding=True)))
         .values(state=RUNNING, node=bindparam("node"), begin=bindparam("now"),
                 updated_at=bindparam("now")))
_STARTED = (update(JOBS).where(JOBS.c.id == bindparam("job_id"))
            .values(command=bindparam("command"), env=bindparam("env"), pid=bindparam("pid"),
                    begin=func.coalesce(bindparam("begin", type_=JOBS.c.begin.type),
                                        JOBS.c.begin)))
_ENDED = (update(JOBS).where(JOBS.c.id == bindparam("job_id"))
          .values(state=bindparam("state"), end=bindparam("now"), exitcode=bindparam("code"),
                  updated_at=bindparam("now"),
                  reason=func.coalesce(bindparam("reason", type_=JOBS.c.reason.type),
                                       JOBS.c.reason)))
_STARTED_AND_ENDED = _ENDED.values(
    command=bindparam("command"), env=bindparam("env"), pid=bindparam("pid"),
    begin=func.coalesce(bindparam("begin", type_=JOBS.c.begin.type), JOBS.c.begin))
_COUNT_SUCCESS = (update(RUNTEMPLATES).where(RUNTEMPLATES.c.id == bindparam("rt_id"))
                  .values(successful_jobs_count=RUNTEMPLATES.c.successful_jobs_count + 1,
                          updated_at=RUNTEMPLATES.c.updated_at))  # counting is no change
_ADD_OUTPUT = insert(JOB_OUTPUT)
_OUTPUT_SIZE = (update(JOBS).where(JOBS.c.id == bindparam("job_id"))
                .values(output_bytes=JOBS.c.output_bytes + bindparam("added"),
                        output_dropped=JOBS.c.output_dropped + bindparam("dropped")))


def claim_rows(s: Session, now: datetime, node: str, limit: int) -> list[Any]:
    """:func:`claim`, returning what launching each job needs (one round trip more, in
    the same transaction, instead of one read per job afterwards)."""
    from .prepare import job_rows

    ids = claim(s, now, node, limit)
    return job_rows(s, ids) if ids else []


def next_after(s: Session) -> datetime | None:
    """When the earliest queued job becomes due."""
    return s.scalar(select(Schedule.after).order_by(Schedule.after).limit(1))


def recover_lost(s: Session, node: str, now: datetime, all_nodes: bool) -> list[int]:
    """Jobs left ``running`` by a previous life of this node (or by anyone on SQLite,
    where only one daemon runs) become ``lost``: they are never left running forever."""
    query = select(Job.id).where(Job.state == RUNNING)
    if not all_nodes:
        query = query.where(Job.node == node)
    ids = list(s.scalars(query))
    if ids:
        s.execute(
            update(JOBS).where(Job.id.in_(ids)).values(
                state="lost", end=now, updated_at=now,
                reason=f"multiflexid on {node} stopped while the job ran "
                       "(its result is unknown)",
            )
        )
    return ids


def job_fields(s: Session, job: Job) -> dict[str, Any]:
    """The journal fields that tell whose job a log line is about."""
    return {
        "MULTIFLEXI_JOB_ID": job.id,
        "MULTIFLEXI_RUNTEMPLATE_ID": job.runtemplate_id,
        "MULTIFLEXI_COMPANY": s.scalar(select(Company.slug).where(Company.id == job.company_id)),
        "MULTIFLEXI_APP": s.scalar(select(Application.name).where(Application.id == job.app_id)),
    }


def job_started(
    s: Session, job_id: int, *, command: list[str], env: dict[str, Any], pid: int | None,
    begin: datetime | None,
) -> None:
    """What the job runs (secrets masked), its environment's record, its pid and when it
    really began (a claimed job may wait a moment for a free slot)."""
    s.connection().execute(_STARTED, {"job_id": job_id, "command": command, "env": env,
                                      "pid": pid, "begin": begin})


def release(s: Session, job_ids: list[int], now: datetime) -> None:
    """Claimed jobs that never started go back to the queue (the daemon is stopping)."""
    for job in s.scalars(select(Job).where(Job.id.in_(job_ids), Job.state == RUNNING)):
        job.state, job.node, job.begin = "scheduled", None, None
        s.add(Schedule(job_id=job.id, runtemplate_id=job.runtemplate_id, after=now))
    notify_nodes(s)


def finish(
    s: Session,
    job_id: int,
    *,
    state: str,
    now: datetime,
    exitcode: int | None = None,
    reason: str | None = None,
    box: SecretBox | None = None,
) -> Job:
    """Record a job's end, count it on its template, and queue a retry when the template's
    policy and the app's exit codes allow one (only with ``box``, to copy overrides)."""
    job = s.get(Job, job_id)
    assert job is not None
    meaning = None
    if exitcode is not None:
        meaning = s.scalar(select(AppExitCode).where(
            AppExitCode.app_id == job.app_id, AppExitCode.code == exitcode))
    if state == "failed" and meaning is not None and meaning.severity in ("success", "info"):
        state = "succeeded"  # the app says this non-zero code is a success
    job.state = state
    job.end = now
    job.exitcode = exitcode
    if reason:
        job.reason = reason
    if box is not None:
        _maybe_retry(s, job, now, box, meaning.retry if meaning is not None else None)
    if job.runtemplate_id is not None:
        column = (RunTemplate.successful_jobs_count if state == "succeeded"
                  else RunTemplate.failed_jobs_count)
        if state in ("succeeded", "failed", "timed_out"):
            # Counting is no change of the template: keep updated_at (the launch cache's key)
            s.execute(update(RUNTEMPLATES).where(RunTemplate.id == job.runtemplate_id)
                      .values({column: column + 1, "updated_at": RunTemplate.updated_at}))
    s.flush()
    return job


def record_end(
    s: Session,
    job_id: int,
    *,
    state: str,
    now: datetime,
    exitcode: int | None,
    reason: str | None,
    runtemplate_id: int | None,
    declared: ExitCodeDef | None,
    box: SecretBox,
    started: dict[str, Any] | None = None,
) -> str:
    """The daemon's :func:`finish` for a job it prepared (it knows the app's meaning of the
    exit code), with the job's start (command, env, pid, begin) when that was not written
    yet: one or two plain UPDATEs in the common case; returns the final state."""
    if state == "failed" and declared is not None and declared.severity in ("success", "info"):
        state = "succeeded"
    if state in RETRYABLE_STATES:  # may need a retry: the full path
        if started is not None:
            job_started(s, job_id, **started)
        return finish(s, job_id, state=state, now=now, exitcode=exitcode, reason=reason,
                      box=box).state
    conn = s.connection()
    params = {"job_id": job_id, "state": state, "now": now, "code": exitcode,
              "reason": reason or None}
    if started is None:
        conn.execute(_ENDED, params)
    else:
        conn.execute(_STARTED_AND_ENDED, {**params, **started})
    if runtemplate_id is not None and state == "succeeded":
        conn.execute(_COUNT_SUCCESS, {"rt_id": runtemplate_id})
    return state


def _maybe_retry(
    s: Session, job: Job, now: datetime, box: SecretBox, declared: bool | None
) -> Job | None:
    if job.runtemplate_id is None:
        return None
    rt = s.get(RunTemplate, job.runtemplate_id)
    if rt is None or not may_retry(job.state, job.attempt, rt.max_attempts, declared):
        return None
    gap = retry_gap(rt.retry_backoff, rt.retry_min_gap, job.attempt)
    overrides, secret = decrypt_overrides(job.overrides, box)
    retry = create_job(
        s, rt, schedule_type="retry", launched_by=job.launched_by,
        after=now + timedelta(seconds=gap), box=box, overrides=overrides, secret=secret,
        attempt=job.attempt + 1, retry_of=job.id,
    )
    job.reason = ((job.reason + "; ") if job.reason else "") + (
        f"retry {retry.attempt}/{rt.max_attempts} queued as job {retry.id} in {gap} s")
    return retry


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


def write_output(s: Session, rows: list[dict[str, Any]], sizes: dict[int, tuple[int, int]]) -> None:
    """Insert output chunks and bump each job's byte counters: (bytes, dropped)."""
    conn = s.connection()
    if rows:
        conn.execute(_ADD_OUTPUT, rows)
    if sizes:
        conn.execute(_OUTPUT_SIZE, [{"job_id": j, "added": a, "dropped": d}
                                    for j, (a, d) in sizes.items()])


def cancel_queued(s: Session, job_id: int, now: datetime, by: str) -> bool:
    """Cancel a job that has not started; False if it is not queued."""
    removed = s.execute(delete(SCHEDULE).where(Schedule.job_id == job_id))
    if not getattr(removed, "rowcount", 0):
        return False
    s.execute(update(JOBS).where(Job.id == job_id).values(
        state="cancelled", end=now, updated_at=now, reason=f"cancelled by {by} before it ran"))
    return True


def request_cancel(s: Session, job_id: int) -> None:
    s.execute(update(JOBS).where(Job.id == job_id).values(cancel_requested=True))
    notify_nodes(s)  # the node running it looks at its cancel requests when woken
