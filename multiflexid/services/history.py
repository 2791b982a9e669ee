"""History housekeeping: ``job prune``, the one thing that ever deletes jobs, and only
when an admin asks.

It removes jobs in a final state that ended before a date, with their output, artifacts
and action runs — never a job that is queued, claimed or running, never one whose action
runs are still to be delivered, and (``keep_last``) never the newest K finished jobs of
each template. Each prune is one entry of the audit trail with its criteria and counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, exists, func, select
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput
from multiflexi.states import FINAL_STATES
from multiflexid.presenters import iso
from multiflexid.store.audit import note
from multiflexid.store.orm import (
    JOBS,
    ActionRun,
    Artifact,
    Company,
    Job,
    JobOutput,
    Schedule,
)

_CHUNK = 500
_COUNTS = ("jobs", "output_bytes", "artifacts", "action_runs")


def prunable(s: Session, before: datetime, company: Company | None,
             keep_last: int | None) -> list[int]:
    """Ids of the jobs a prune with these criteria removes, oldest first."""
    final = Job.state.in_(FINAL_STATES)
    query = select(Job.id).where(final, func.coalesce(Job.end, Job.created_at) < before,
                                 ~exists().where(ActionRun.job_id == Job.id,
                                                 ActionRun.state.in_(("pending", "running"))))
    if company is not None:
        query = query.where(Job.company_id == company.id)
    if keep_last:
        ranked = select(Job.id, func.row_number().over(
            partition_by=Job.runtemplate_id, order_by=Job.id.desc()).label("n")).where(
            final, Job.runtemplate_id.is_not(None))
        if company is not None:
            ranked = ranked.where(Job.company_id == company.id)
        newest = ranked.subquery()
        query = query.where(Job.id.not_in(select(newest.c.id).where(newest.c.n <= keep_last)))
    return list(s.scalars(query.order_by(Job.id)))


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def _count(s: Session, ids: list[int]) -> dict[str, dict[str, int]]:
    """Per company slug: jobs, output bytes, artifacts and action runs of ``ids``."""
    slugs = dict(s.execute(select(Company.id, Company.slug)).all())
    out: dict[str, dict[str, int]] = {}

    def add(rows: Any, what: str) -> None:
        for company_id, n in rows:
            slot = out.setdefault(slugs.get(company_id, str(company_id)),
                                  dict.fromkeys(_COUNTS, 0))
            slot[what] += int(n or 0)

    for chunk in _chunks(ids):
        add(s.execute(select(Job.company_id, func.count()).where(Job.id.in_(chunk))
                      .group_by(Job.company_id)), "jobs")
        for what, model, amount in (
                ("output_bytes", JobOutput, func.sum(func.length(JobOutput.data))),
                ("artifacts", Artifact, func.count()), ("action_runs", ActionRun, func.count())):
            add(s.execute(select(Job.company_id, amount).select_from(model)
                          .join(Job, Job.id == model.job_id).where(model.job_id.in_(chunk))
                          .group_by(Job.company_id)), what)
    return dict(sorted(out.items()))


def prune(s: Session, *, before: datetime, company: Company | None = None,
          keep_last: int | None = None, dry_run: bool = False) -> dict[str, Any]:
    """Remove (or with ``dry_run`` only count) what :func:`prunable` finds:
    ``{criteria, companies: {slug: {jobs, output_bytes, artifacts, action_runs}}, total,
    removed}``."""
    if before.tzinfo is None:
        raise InvalidInput("before: give a time zone (Z or +01:00)", {"field": "before"})
    if keep_last is not None and keep_last < 0:
        raise InvalidInput("keep_last: must not be negative", {"field": "keep_last"})
    ids = prunable(s, before, company, keep_last)
    by_company = _count(s, ids)
    total = {k: sum(c[k] for c in by_company.values()) for k in _COUNTS}
    criteria = {"before": iso(before), "company": company.slug if company else None,
                "keep_last": keep_last}
    result = {"criteria": criteria, "companies": by_company, "total": total,
              "removed": not dry_run}
    if dry_run:
        return result
    children = [cast(Table, m.__table__) for m in (JobOutput, Artifact, ActionRun, Schedule)]
    for chunk in _chunks(ids):
        for table in children:
            s.execute(delete(table).where(table.c.job_id.in_(chunk)))
        s.execute(delete(JOBS).where(JOBS.c.id.in_(chunk)))
    keeping = f", keeping the newest {keep_last} of each template" if keep_last else ""
    note(s, "job", None, company.id if company else None, "prune",
         f"pruned {total['jobs']} job(s) ended before {criteria['before']}"
         f"{' of company ' + company.slug if company else ''}{keeping}: "
         f"{total['output_bytes']} bytes of output, {total['artifacts']} artifact(s), "
         f"{total['action_runs']} action run(s)",
         {**{f"criteria.{k}": [None, v] for k, v in criteria.items()},
          **{f"removed.{k}": [None, v] for k, v in total.items()},
          "removed.by_company": [None, by_company]})
    return result
