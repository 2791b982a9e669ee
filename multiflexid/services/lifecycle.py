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

from sqlalchemy import bindparam, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from multiflexid.artifacts import Collection
from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import ExitCodeDef
from multiflexid.domain.retry import RETRYABLE_STATES, may_retry, retry_gap
from multiflexid.domain.schedule import catch_up
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
from .runtemplates import recurrence

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


def tick(s: Session, now: datetime, box: SecretBox, limit: int = 1000) -> TickResult:
    """Turn due active templates into jobs (one per template tick, whatever happens)."""
    result = TickResult()
    query = (
        select(RunTemplate)
        .where(RunTemplate.active.is_(True), RunTemplate.next_schedule <= now)
        .order_by(RunTemplate.next_schedule)
        .limit(limit)
    )
    if s.bind is not None and s.bind.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    for rt in s.scalars(query):
        rec = recurrence(rt)
        due_tick = rt.next_schedule
        assert due_tick is not None
        try:
            missed, upcoming = catch_up(rec, due_tick, now)
        except ValueError as exc:  # a broken cron or zone: stop scheduling it, say why
            log.error("run template %s: %s; not scheduled", rt.id, exc,
                      extra={"MULTIFLEXI_RUNTEMPLATE_ID": rt.id})
            rt.next_schedule = None
            result.skipped.append((rt.id, str(exc)))
            continue
        rt.next_schedule = upcoming
        if missed is None:
            continue
        rt.last_schedule = missed
        why = _skip_reason(s, rt)
        if why:
            result.skipped.append((rt.id, why))
            log.info("run template %s: tick %s skipped: %s", rt.id, missed.isoformat(), why,
                     extra={"MULTIFLEXI_RUNTEMPLATE_ID": rt.id})
            continue
        late = now - missed > CATCH_UP_AFTER
        busy = _has_running(s, rt.id)
        try:
            with s.begin_nested():
                job = create_job(
                    s, rt,
                    schedule_type="catch-up" if late else rec.schedule_type,
                    launched_by="scheduler",
                    after=missed + timedelta(seconds=rt.delay or 0),
                    tick=missed,
                    box=box,
                    state="pending" if busy else "scheduled",
                )
        except IntegrityError:
            # Another node (or an earlier attempt) already made this tick's job.
            result.skipped.append((rt.id, "job for this tick exists"))
            continue
        result.created.append(job.id)
    result.next_due = s.scalar(
        select(RunTemplate.next_schedule)
        .where(RunTemplate.active.is_(True), RunTemplate.next_schedule.is_not(None))
        .order_by(RunTemplate.next_schedule).limit(1)
    )
    return result


def _skip_reason(s: Session, rt: RunTemplate) -> str | None:
    app_enabled = s.scalar(select(Application.enabled).where(Application.id == rt.app_id))
    if not app_enabled:
        return "application disabled"
    company_enabled = s.scalar(select(Company.enabled).where(Company.id == rt.company_id))
    if not company_enabled:
        return "company disabled"
    # At most one job waits per template: the next tick is coalesced into it.
    waiting = s.scalar(select(exists().where(
        Job.runtemplate_id == rt.id, Job.state.in_(("pending", "scheduled")))))
    if waiting:
        return "a job of this template is already waiting"
    return None


def _has_running(s: Session, rt_id: int) -> bool:
    return bool(s.scalar(select(exists().where(
        Job.runtemplate_id == rt_id, Job.state == RUNNING))))


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
    overrides, _secret = decrypt_overrides(job.overrides, box)
    retry = create_job(
        s, rt, schedule_type="retry", launched_by=job.launched_by,
        after=now + timedelta(seconds=gap), box=box, overrides=overrides,
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
