"""Jobs: creation (queueing), queries, output."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexi.states import FINAL_STATES, QUEUED_STATES
from multiflexid.crypto import SecretBox
from multiflexid.domain.config import is_secret_key
from multiflexid.domain.jobstate import JobEnded
from multiflexid.presenters import exit_code_dict, job_view_dict
from multiflexid.store.audit import note
from multiflexid.store.orm import (
    AppExitCode,
    Application,
    Artifact,
    Company,
    Job,
    JobOutput,
    RunTemplate,
    Schedule,
)
from multiflexid.store.transitions import Batch, JobTransitions

from .apps import get_app, to_definition


def parse_assignments(items: list[str] | tuple[str, ...], what: str = "--env") -> dict[str, str]:
    """``KEY=VALUE`` strings to a dict; a malformed one is an error naming it."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"{what}: {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def encrypt_overrides(
    app: Application | None, s: Session, overrides: dict[str, str], box: SecretBox,
    secret: Iterable[str] = (),
) -> dict[str, Any]:
    """One-off overrides as stored on the job: secret ones as ``{"encrypted": token}`` (the
    app's secret fields, keys named like secrets, the keys in ``secret``)."""
    if not overrides:
        return {}
    fields = {}
    if app is not None:
        fields = {f.key: f for f in to_definition(get_app(s, app.id, parts=True)).env_fields}
    marked = set(secret)
    return {
        k: ({"encrypted": box.encrypt(v)} if is_secret_key(k, fields.get(k), marked) else v)
        for k, v in overrides.items()
    }


def decrypt_overrides(stored: dict[str, Any], box: SecretBox) -> tuple[dict[str, str], set[str]]:
    values, secret = {}, set()
    for k, v in stored.items():
        if isinstance(v, dict) and "encrypted" in v:
            values[k] = box.decrypt(v["encrypted"])
            secret.add(k)
        else:
            values[k] = str(v)
    return values, secret


def create_job(
    s: Session,
    tx: JobTransitions,
    rt: RunTemplate,
    *,
    schedule_type: str,
    launched_by: str,
    after: datetime,
    box: SecretBox,
    tick: datetime | None = None,
    overrides: dict[str, str] | None = None,
    secret: Iterable[str] = (),
) -> Job:
    """Queue one job of ``rt``; it runs not before ``after``. Secret one-off values are
    stored encrypted (see :func:`encrypt_overrides`)."""
    app = s.get(Application, rt.app_id) if overrides else None
    return tx.create(s, rt, schedule_type=schedule_type, launched_by=launched_by,
                     after=after, tick=tick,
                     overrides=encrypt_overrides(app, s, overrides or {}, box, secret))


def get_job(s: Session, job_id: int | str) -> Job:
    text = str(job_id).strip()
    job = s.get(Job, int(text)) if text.isdigit() else None
    if job is None:
        raise NotFound(f"no job with id {text!r}")
    return job


def read_output(
    s: Session, job_id: int, *, after_seq: int = -1, stream: str | None = None,
    limit: int = 5000, from_end: bool = False, before_seq: int | None = None,
) -> list[JobOutput]:
    """Output chunks in order: the first ``limit`` with ``seq > after_seq``; or, from the
    end, the last ``limit`` (before ``before_seq`` when given: paging back)."""
    query = select(JobOutput).where(JobOutput.job_id == job_id).limit(limit)
    if stream is not None:
        query = query.where(JobOutput.stream.in_((stream, "system")))
    if not from_end:
        return list(s.scalars(query.where(JobOutput.seq > after_seq).order_by(JobOutput.seq)))
    if before_seq is not None:
        query = query.where(JobOutput.seq < before_seq)
    return list(s.scalars(query.order_by(JobOutput.seq.desc())))[::-1]


def output_before(s: Session, job_id: int, seq: int, stream: str | None = None) -> bool:
    """Whether the job has output before chunk ``seq``."""
    query = select(JobOutput.seq).where(JobOutput.job_id == job_id, JobOutput.seq < seq)
    if stream is not None:
        query = query.where(JobOutput.stream.in_((stream, "system")))
    return s.scalar(query.limit(1)) is not None


def queue(s: Session, limit: int = 200) -> list[tuple[Schedule, Job]]:
    rows = s.execute(
        select(Schedule, Job).join(Job, Job.id == Schedule.job_id)
        .order_by(Schedule.after, Schedule.id).limit(limit)
    )
    return [(sch, job) for sch, job in rows]


def counts_by_state(s: Session) -> dict[str, int]:
    rows = s.execute(select(Job.state, func.count()).group_by(Job.state))
    return {state: n for state, n in rows}


def cancel_queued_of_template(s: Session, tx: JobTransitions, rt: RunTemplate, reason: str,
                              now: datetime) -> Batch[JobEnded]:
    """Cancel jobs of ``rt`` that have not started (those a node started since they were
    looked up are in the result's ``skipped``)."""
    ids = list(s.scalars(select(Job.id).where(
        Job.runtemplate_id == rt.id, Job.state.in_(QUEUED_STATES))))
    return tx.cancel(s, ids, now, reason, strict=False)


def cancel(s: Session, tx: JobTransitions, job_id: int, now: datetime, by: str) -> str:
    """Cancel a job, whoever asks: one not started yet is cancelled now (``"cancelled"``;
    a node that claimed it is then refused its start), a running one is asked to stop
    (``"requested"``: the node running it stops it), an ended one is a Conflict."""
    job = get_job(s, job_id)
    if job.state in (*QUEUED_STATES, "claimed"):
        tx.cancel(s, [job_id], now, f"cancelled by {by} before it ran")
        note(s, "job", job_id, job.company_id, "cancel",
             f"job {job_id} cancelled before it ran", {"state": [job.state, "cancelled"]},
             runtemplate_id=job.runtemplate_id)
        return "cancelled"
    if job.state == "running" and tx.request_cancel(s, job_id):
        note(s, "job", job_id, job.company_id, "cancel",
             f"job {job_id} cancel requested (it is stopped)",
             runtemplate_id=job.runtemplate_id)
        return "requested"
    raise Conflict(f"job {job_id} is already {job.state}; nothing to cancel")


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def exit_meaning(s: Session, job: Job) -> dict[str, Any] | None:
    """What the app says the job's exit code means (None: no code, or undeclared)."""
    if job.exitcode is None:
        return None
    row = s.scalar(select(AppExitCode).where(AppExitCode.app_id == job.app_id,
                                             AppExitCode.code == job.exitcode))
    return exit_code_dict(row) if row else None


def job_view(s: Session, job_id: int) -> dict[str, Any]:
    """A job as `job show` and the socket's job.get present it."""
    from .actions import list_runs, run_view  # (actions queue jobs: imported late)

    job = get_job(s, job_id)
    app = s.get(Application, job.app_id)
    company = s.get(Company, job.company_id)
    return job_view_dict(
        job, exit_meaning(s, job), app_name=app.name if app else None,
        company_slug=company.slug if company else None,
        queued_after=s.scalar(select(Schedule.after).where(Schedule.job_id == job_id)),
        artifacts=list(s.scalars(select(Artifact).where(Artifact.job_id == job_id)
                                 .order_by(Artifact.id))),
        action_runs=[run_view(r) for r in reversed(list_runs(s, job_id=job_id, limit=200))])
