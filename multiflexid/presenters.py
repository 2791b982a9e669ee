"""Plain-dict views of stored things, the same for the CLI's JSON and the socket protocol."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from multiflexid.domain.deadline import Deadline
from multiflexid.store.orm import (
    AppExitCode,
    Application,
    Artifact,
    Company,
    Credential,
    CredentialType,
    Job,
    RunTemplate,
)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def app_dict(app: Application, parts: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": app.id,
        "uuid": app.uuid,
        "name": app.name,
        "title": app.title,
        "description": app.description,
        "executable": app.executable,
        "cmdparams": app.cmdparams,
        "ociimage": app.ociimage,
        "version": app.version,
        "homepage": app.homepage,
        "enabled": app.enabled,
        "requirements": list(app.requirements),
        "tags": list(app.tags),
        "localized": app.localized,
    }
    if parts:
        out["environment"] = [
            {
                "key": f.key, "type": f.type, "category": f.category,
                "description": f.description, "hint": f.hint, "default": f.defval,
                "required": f.required, "secret": f.secret, "options": f.options,
                "localized": f.localized,
            }
            for f in app.env_fields
        ]
        out["artifacts"] = [
            {"name": a.name, "path": a.path, "type": a.type, "description": a.description}
            for a in app.artifacts
        ]
        out["exit_codes"] = [exit_code_dict(e) for e in app.exit_codes]
    return out


def exit_code_dict(e: AppExitCode) -> dict[str, Any]:
    return {
        "code": e.code, "description": e.description, "severity": e.severity,
        "retry": e.retry,
    }


def company_dict(c: Company) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "slug": c.slug, "ic": c.ic, "dic": c.dic,
        "email": c.email, "enabled": c.enabled, "zabbix_host": c.zabbix_host,
        "zabbix_server": c.zabbix_server, "created_at": iso(c.created_at),
    }


def credential_type_dict(t: CredentialType) -> dict[str, Any]:
    return {
        "id": t.id, "code": t.code, "uuid": t.uuid, "name": t.name,
        "description": t.description, "version": t.version,
        "fields": [
            {
                "keyword": f.keyword, "name": f.name, "type": f.type,
                "description": f.description, "required": f.required, "secret": f.secret,
                "default": f.default, "options": f.options,
            }
            for f in t.fields
        ],
    }


def credential_dict(
    c: Credential, type_code: str, company_slug: str, values: dict[str, str]
) -> dict[str, Any]:
    return {
        "id": c.id, "name": c.name, "company_id": c.company_id, "company": company_slug,
        "type": type_code, "values": values, "created_at": iso(c.created_at),
    }


def runtemplate_dict(
    rt: RunTemplate, app_name: str | None = None, company_slug: str | None = None,
    parts: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": rt.id,
        "name": rt.name,
        "app_id": rt.app_id,
        "app": app_name,
        "company_id": rt.company_id,
        "company": company_slug,
        "interv": rt.interv,
        "cron": rt.cron,
        "timezone": rt.timezone,
        "delay": rt.delay,
        "executor": rt.executor,
        "active": rt.active,
        "timeout": rt.timeout,
        "max_attempts": rt.max_attempts,
        "retry_backoff": rt.retry_backoff,
        "retry_min_gap": rt.retry_min_gap,
        "ociimage": rt.ociimage,
        "memory_limit": rt.memory_limit,
        "cpu_limit": rt.cpu_limit,
        "pids_limit": rt.pids_limit,
        "network": rt.network,
        # When the next job will be due (the tick plus the delay); the tick itself apart.
        "next_schedule": iso(next_due(rt)),
        "next_tick": iso(rt.next_schedule),
        "last_schedule": iso(rt.last_schedule),
        "successful_jobs_count": rt.successful_jobs_count,
        "failed_jobs_count": rt.failed_jobs_count,
        "inherit_actions": rt.inherit_actions,
        "inactive_reason": rt.inactive_reason,
        "last_success": iso(rt.last_success_at),
        # Each tick's deadline: "07:00" (a time of day in its zone) or "+2h" (after due)
        "deadline": deadline_text(rt.deadline_time, rt.deadline_after),
        "deadline_time": rt.deadline_time,
        "deadline_after": rt.deadline_after,
        "note": rt.note,
    }
    if parts:
        out["config_keys"] = [c.key for c in rt.config]
        out["credentials"] = sorted(c.credential_id for c in rt.credentials)
        out["tags"] = sorted(t.tag for t in rt.tags)
    return out


def deadline_text(at: str | None, after: int | None) -> str | None:
    deadline = Deadline.of(at, after)
    return deadline.describe() if deadline else None


def next_due(rt: RunTemplate) -> datetime | None:
    """When the template's next job is due: its stored next tick plus its delay."""
    if rt.next_schedule is None:
        return None
    return rt.next_schedule + timedelta(seconds=rt.delay or 0)


def job_dict(job: Job, meaning: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state,
        "runtemplate_id": job.runtemplate_id,
        "runtemplate_name": job.runtemplate_name,
        "app_id": job.app_id,
        "company_id": job.company_id,
        "schedule_type": job.schedule_type,
        "schedule": iso(job.schedule),
        "tick": iso(job.tick),
        "executor": job.executor,
        "command": job.command,
        "begin": iso(job.begin),
        "end": iso(job.end),
        "exitcode": job.exitcode,
        "exit_meaning": meaning,
        "pid": job.pid,
        "launched_by": job.launched_by,
        "node": job.node,
        "reason": job.reason,
        "attempt": job.attempt,
        "retry_of": job.retry_of_id,
        "timeout": job.timeout,
        "output_bytes": job.output_bytes,
        "output_dropped": job.output_dropped,
        "report": (
            {"status": job.report_status, "message": job.report_message,
             "metrics": job.report_metrics}
            if job.report_status else None
        ),
        "created_at": iso(job.created_at),
    }


def job_view_dict(
    job: Job, meaning: dict[str, Any] | None, *, app_name: str | None,
    company_slug: str | None, queued_after: datetime | None, artifacts: list[Artifact],
    action_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """A job as `job show` and the socket's job.get present it."""
    return {
        **job_dict(job, meaning), "app": app_name, "company": company_slug,
        "environment": (job.env or {}).get("values"), "queued_after": iso(queued_after),
        "artifacts": [artifact_dict(a) for a in artifacts], "action_runs": action_runs,
    }


def last_job_dict(job: Job | None) -> dict[str, Any] | None:
    """A template's last job, as its views show it."""
    if job is None:
        return None
    return {"id": job.id, "state": job.state, "exitcode": job.exitcode, "end": iso(job.end)}


def output_view(job_id: int, seq: int, stream: str, at: datetime, data: bytes) -> dict[str, Any]:
    """A chunk of a job's output, as ``job.output`` returns it and ``job.output`` events
    push it."""
    return {"job_id": job_id, "seq": seq, "stream": stream, "at": iso(at),
            "data": data.decode("utf-8", "replace")}


def artifact_dict(a: Artifact) -> dict[str, Any]:
    return {
        "id": a.id, "job_id": a.job_id, "name": a.name, "filename": a.filename,
        "content_type": a.content_type, "size": a.size, "sha256": a.sha256,
        "skipped": a.skipped, "note": a.note, "created_at": iso(a.created_at),
    }
