"""Reading the audit trail, and a company's data on request (``company export``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import multiflexi
from multiflexid.crypto import SecretBox
from multiflexid.presenters import (
    artifact_dict,
    company_dict,
    credential_dict,
    iso,
    job_dict,
    runtemplate_dict,
)
from multiflexid.store.orm import (
    Action,
    ActionRun,
    Application,
    Artifact,
    AuditEntry,
    Company,
    CredentialType,
    Job,
    JobOutput,
    RunTemplate,
    RunTemplateTick,
)

from .actions import run_view
from .company_env import env_rows, env_view
from .credentials import credential_values, list_credentials
from .deadlines import tick_record
from .runtemplates import list_runtemplates

ENTITIES = ("company", "credential", "runtemplate", "application", "action", "access", "job",
            "action_run")


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {"id": e.id, "at": iso(e.at), "user": e.user, "login_user": e.login_user,
            "via": e.via, "entity": e.entity, "entity_id": e.entity_id,
            "company_id": e.company_id, "runtemplate_id": e.runtemplate_id,
            "action": e.action, "summary": e.summary,
            "diff": e.diff}


def list_entries(s: Session, *, company_id: int | None = None, since: datetime | None = None,
                 user: str | None = None, entity: str | None = None,
                 entity_id: int | None = None, runtemplate_id: int | None = None,
                 limit: int = 200, before_id: int | None = None,
                 companies: set[int] | None = None) -> list[AuditEntry]:
    """Newest first. ``runtemplate_id``: what concerns that template (its changes, run now
    and cancel of its jobs, its actions); ``companies``: only entries of these (those the
    caller may see), chosen in the query so that a page is full whatever else is there."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 10000)))
    if company_id is not None:
        query = query.where(AuditEntry.company_id == company_id)
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if user is not None:
        query = query.where((AuditEntry.user == user) | (AuditEntry.login_user == user))
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    if runtemplate_id is not None:
        query = query.where(AuditEntry.runtemplate_id == runtemplate_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if companies is not None:
        query = query.where(AuditEntry.company_id.in_(companies))
    return list(s.scalars(query))


# --- a company's data ---------------------------------------------------------------------


def export_company(s: Session, company: Company, box: SecretBox, out: IO[str],
                   now: datetime) -> dict[str, int]:
    """Everything stored about ``company`` as one JSON document written to ``out`` as it is
    read (a long history never sits in memory): the company, its credentials, environment
    and run templates (secret values redacted), actions, jobs with their output and artifact
    list, the deliveries of its actions (action runs, secrets redacted), its templates'
    tracked deadline ticks, and its audit trail. Returns how many of each were written."""
    counts: dict[str, int] = {}
    codes = dict(s.execute(select(CredentialType.id, CredentialType.code)).all())
    apps = dict(s.execute(select(Application.id, Application.name)).all())

    def credentials() -> Iterator[dict[str, Any]]:
        for c in list_credentials(s, company):
            yield credential_dict(c, codes.get(c.credential_type_id, "?"), company.slug,
                                  credential_values(c, box, reveal=False))

    def environment() -> Iterator[dict[str, Any]]:
        yield from env_view(env_rows(s, company.id), box, reveal=False)

    def templates() -> Iterator[dict[str, Any]]:
        for rt in list_runtemplates(s, company):
            view = runtemplate_dict(rt, apps.get(rt.app_id), company.slug, parts=True)
            view["config"] = {c.key: "(secret)" if c.encrypted else c.value for c in rt.config}
            yield view

    def actions() -> Iterator[dict[str, Any]]:
        rts = select(RunTemplate.id).where(RunTemplate.company_id == company.id)
        for a in s.scalars(select(Action).where(
                (Action.company_id == company.id) | Action.runtemplate_id.in_(rts))
                .order_by(Action.id)):
            yield {"id": a.id, "runtemplate_id": a.runtemplate_id, "company_id": a.company_id,
                   "module": a.module, "trigger": a.trigger, "throttle": a.throttle,
                   "enabled": a.enabled, "note": a.note,
                   "config": _redacted(a.config)}

    def jobs() -> Iterator[dict[str, Any]]:
        ids = list(s.scalars(select(Job.id).where(Job.company_id == company.id)
                             .order_by(Job.id)))
        for start in range(0, len(ids), 500):
            for job in s.scalars(select(Job).where(Job.id.in_(ids[start:start + 500]))
                                 .order_by(Job.id)):
                view = job_dict(job)
                view["environment"] = (job.env or {}).get("values")
                view["output"] = [
                    {"seq": c.seq, "stream": c.stream, "at": iso(c.at),
                     "data": c.data.decode("utf-8", "replace")}
                    for c in s.scalars(select(JobOutput).where(JobOutput.job_id == job.id)
                                       .order_by(JobOutput.seq))]
                view["artifacts"] = [artifact_dict(a) for a in s.scalars(
                    select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.id))]
                yield view

    def action_runs() -> Iterator[dict[str, Any]]:  # the deliveries of its jobs' ends
        for r in s.scalars(select(ActionRun).where(ActionRun.company_id == company.id)
                           .order_by(ActionRun.id).execution_options(yield_per=500)):
            yield {**run_view(r), "config": _redacted(r.config)}

    def ticks() -> Iterator[dict[str, Any]]:  # its templates' deadlines, tick by tick
        for t in s.scalars(select(RunTemplateTick).where(
                RunTemplateTick.company_id == company.id)
                .order_by(RunTemplateTick.runtemplate_id, RunTemplateTick.tick)
                .execution_options(yield_per=500)):
            yield {"runtemplate_id": t.runtemplate_id, **tick_record(t, now)}

    def audit() -> Iterator[dict[str, Any]]:
        for e in s.scalars(select(AuditEntry).where(AuditEntry.company_id == company.id)
                           .order_by(AuditEntry.id)):
            yield entry_dict(e)

    out.write("{\n")
    out.write(f'"exported_at": {json.dumps(iso(now))},\n')
    out.write(f'"multiflexi_version": {json.dumps(multiflexi.__version__)},\n')
    out.write('"secrets": "redacted",\n')
    out.write(f'"company": {json.dumps(company_dict(company), ensure_ascii=False)}')
    for name, rows in (("credentials", credentials()), ("environment", environment()),
                       ("runtemplates", templates()),
                       ("actions", actions()), ("jobs", jobs()),
                       ("action_runs", action_runs()), ("deadline_ticks", ticks()),
                       ("audit", audit())):
        out.write(f',\n"{name}": [')
        n = 0
        for row in rows:
            out.write((",\n" if n else "\n") + json.dumps(row, ensure_ascii=False, default=str))
            n += 1
        out.write("\n]" if n else "]")
        counts[name] = n
    out.write("\n}\n")
    return counts


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"encrypted"}:
            return "(secret)"
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value
