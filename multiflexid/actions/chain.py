"""The modules that change what MultiFlexi does next: ChainRuntemplate (queue another
template of the same company), Reschedule (run again later), Stop (disable the template).

A chained job gets ``MULTIFLEXI_PREVIOUS_JOB_ID`` (and ``MULTIFLEXI_CHAIN_DEPTH``) as
one-off values; when it starts, the daemon writes the previous job's stored artifacts into
``<job dir>/.previous-artifacts/`` and tells the job where in
``MULTIFLEXI_PREVIOUS_ARTIFACTS`` (:func:`previous_artifacts`). A chain that comes back to
itself stops at :data:`MAX_CHAIN_DEPTH` with a clear reason.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, NotFound
from multiflexid.crypto import SecretBox
from multiflexid.services.jobs import create_job
from multiflexid.store.orm import Artifact, Company, Job, RunTemplate
from multiflexid.store.transitions import JobTransitions

from .ledger import Result
from .performers import Context

MAX_CHAIN_DEPTH = 10
PREVIOUS_JOB = "MULTIFLEXI_PREVIOUS_JOB_ID"
CHAIN_DEPTH = "MULTIFLEXI_CHAIN_DEPTH"
PREVIOUS_ARTIFACTS = "MULTIFLEXI_PREVIOUS_ARTIFACTS"
PREVIOUS_DIR = ".previous-artifacts"


def chain_target(s: Session, company_id: int, rtid: int) -> RunTemplate:
    """The template a chain queues: it must exist and be of the same company."""
    target = s.get(RunTemplate, rtid)
    if target is None:
        raise NotFound(f"rtid: no run template with id {rtid}", {"field": "rtid"})
    if target.company_id != company_id:
        owner = s.get(Company, target.company_id)
        raise Conflict(f"rtid: run template {rtid} belongs to company "
                       f"{owner.slug if owner else '?'}; a chain stays within its company",
                       {"field": "rtid"})
    return target


def _depth(s: Session, job_id: int | None) -> int:
    if job_id is None:
        return 0
    overrides = s.scalar(select(Job.overrides).where(Job.id == job_id)) or {}
    try:
        return int(overrides.get(CHAIN_DEPTH, 0))
    except (TypeError, ValueError):
        return 0


def queue_chained(s: Session, tx: JobTransitions, box: SecretBox, *,
                  previous_job: int | None, company_id: int, rtid: int, now: datetime
                  ) -> tuple[int | None, str]:
    """Queue a job of ``rtid`` after ``previous_job`` (None: after a tick's event with no
    job): (its id or None, what was done)."""
    target = chain_target(s, company_id, rtid)
    depth = _depth(s, previous_job) + 1
    if depth > MAX_CHAIN_DEPTH:
        return None, (f"not queued: chain depth limit {MAX_CHAIN_DEPTH} reached (job "
                      f"{previous_job} is link {depth - 1} of a chain; is it a cycle?)")
    overrides = {CHAIN_DEPTH: str(depth)}
    if previous_job is not None:
        overrides[PREVIOUS_JOB] = str(previous_job)
    job = create_job(s, tx, target, schedule_type="chained", launched_by="chain",
                     after=now, box=box, overrides=overrides)
    return job.id, f"queued job {job.id} of run template {rtid} {target.name!r}"


def queue_again(s: Session, tx: JobTransitions, box: SecretBox, *, rt_id: int, delay: int,
                now: datetime) -> tuple[int, str]:
    rt = s.get(RunTemplate, rt_id)
    if rt is None:
        raise NotFound(f"run template {rt_id} no longer exists")
    after = now + timedelta(seconds=delay)
    job = create_job(s, tx, rt, schedule_type="reschedule", launched_by="reschedule",
                     after=after, box=box)
    return job.id, f"queued job {job.id} to run at {after.isoformat(timespec='seconds')}"


def stop_template(s: Session, rt_id: int, reason: str, now: datetime) -> str:
    from multiflexid.services.runtemplates import reschedule

    rt = s.get(RunTemplate, rt_id)
    if rt is None:
        raise NotFound(f"run template {rt_id} no longer exists")
    if not rt.active:
        return f"run template {rt_id} was already disabled"
    rt.active = False
    rt.inactive_reason = reason
    reschedule(rt, now)
    s.flush()
    return f"run template {rt_id} disabled: {reason}"


def _summary_ids(ctx: Context) -> tuple[int | None, int, int]:
    """(the job — a tick's last job, or None —, the company, the template)."""
    job = ctx.summary["job"]
    return (int(job["id"]) if job else None, int(ctx.summary["company"]["id"]),
            int(ctx.summary["runtemplate"]["id"] or 0))


def _after(summary: dict[str, Any]) -> str:
    """``job 42 failed`` or ``tick 2026-05-04T03:00:00Z missed its deadline``."""
    tick = summary.get("tick")
    if tick is not None:
        return (f"tick {tick['tick']} " + ("missed its deadline" if tick["outcome"] == "missed"
                                           else "was done after its deadline"))
    return f"job {summary['job']['id']} {summary['job']['state']}"


async def chain(ctx: Context, tx: JobTransitions, box: SecretBox) -> Result:
    job_id, company_id, _rt = _summary_ids(ctx)
    rtid = int(ctx.config["rtid"])
    assert ctx.write is not None
    if ctx.dry_run:
        name = await ctx.write(lambda s: chain_target(s, company_id, rtid).name)
        return Result(True, f"would queue run template {rtid} {name!r} (schedule_type "
                            "chained) with MULTIFLEXI_PREVIOUS_JOB_ID and its artifacts")
    new, text = await ctx.write(lambda s: queue_chained(
        s, tx, box, previous_job=job_id, company_id=company_id, rtid=rtid,
        now=datetime.now(UTC)))
    if new is None:
        return Result(False, text)
    ctx.on_jobs([new])
    return Result(True, text)


async def reschedule(ctx: Context, tx: JobTransitions, box: SecretBox) -> Result:
    _job, _co, rt_id = _summary_ids(ctx)
    delay = int(ctx.config["delay"])
    assert ctx.write is not None
    if ctx.dry_run:
        return Result(True, f"would queue run template {rt_id} again in {delay} s")
    new, text = await ctx.write(lambda s: queue_again(s, tx, box, rt_id=rt_id, delay=delay,
                                                      now=datetime.now(UTC)))
    ctx.on_jobs([new])
    return Result(True, text)


async def stop(ctx: Context, tx: JobTransitions, box: SecretBox) -> Result:
    _job, _co, rt_id = _summary_ids(ctx)
    reason = ctx.config.get("reason") or f"stopped by a Stop action after {_after(ctx.summary)}"
    assert ctx.write is not None
    if ctx.dry_run:
        return Result(True, f"would disable run template {rt_id}: {reason}")
    text = await ctx.write(lambda s: stop_template(s, rt_id, reason, datetime.now(UTC)))
    ctx.on_template(rt_id)
    return Result(True, text)


STATEFUL = {"ChainRuntemplate": chain, "Reschedule": reschedule, "Stop": stop}


# --- the chained job's side: its predecessor's artifacts -----------------------------------


def previous_files(s: Session, job_id: int) -> list[tuple[str, bytes]]:
    return [(a.filename, a.content) for a in s.scalars(
        select(Artifact).where(Artifact.job_id == job_id, Artifact.content.is_not(None))
        .order_by(Artifact.id)) if a.content is not None]


def write_previous(workdir: Path, files: list[tuple[str, bytes]]) -> Path:
    """The previous job's artifacts under ``workdir/.previous-artifacts`` (names kept,
    never outside that directory)."""
    target = workdir / PREVIOUS_DIR
    target.mkdir(mode=0o700, exist_ok=True)
    for name, content in files:
        rel = Path(os.path.normpath(name))
        if rel.is_absolute() or rel.parts[:1] == ("..",):
            rel = Path(rel.name)
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return target


def previous_job_of(env: dict[str, Any]) -> int | None:
    value = str(env.get(PREVIOUS_JOB, "")).strip()
    return int(value) if value.isdigit() else None


class PreviousArtifacts:
    """The dispatcher's steps around a chained job: its predecessor's artifacts into its
    directory before it starts, out again before its own artifacts are collected."""

    def __init__(self, read: Any) -> None:
        self.read = read  # DbThread.read

    async def fill(self, prep: Any) -> None:
        previous = previous_job_of(prep.env)
        if previous is None or prep.workdir is None:
            return
        import asyncio

        files = await self.read(previous_files, previous)
        path = await asyncio.to_thread(write_previous, prep.workdir, files)
        prep.env[PREVIOUS_ARTIFACTS] = str(path)
        values = prep.env_doc.get("values")
        if isinstance(values, dict):
            values[PREVIOUS_ARTIFACTS] = str(path)

    async def clear(self, prep: Any, _result: Any, _out: Any) -> None:
        if (PREVIOUS_ARTIFACTS in prep.env and prep.workdir is not None
                and (prep.workdir / PREVIOUS_DIR).exists()):
            import asyncio
            import shutil

            await asyncio.to_thread(shutil.rmtree, prep.workdir / PREVIOUS_DIR, True)
