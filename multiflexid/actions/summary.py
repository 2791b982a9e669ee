"""The job summary every action gets (WebHook's JSON payload, Notify's text, the variables
of CustomCommand, the body of an issue). Its shape is documented in README.md.

Output is stored masked already (the dispatcher masks secrets before writing); the tail
here is masked once more with the action's own secrets, in case a job printed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import multiflexi
from multiflexid.domain.config import mask_text
from multiflexid.presenters import iso
from multiflexid.services.jobs import exit_meaning
from multiflexid.store.orm import Application, Artifact, Company, Job, JobOutput, RunTemplate

TAIL_LINES = 20
TAIL_BYTES = 4096


def output_tail(s: Session, job_id: int, lines: int = TAIL_LINES) -> list[str]:
    """The job's last lines (stdout, stderr and MultiFlexi's own), at most TAIL_BYTES."""
    chunks: list[bytes] = []
    size = 0
    for data in s.scalars(select(JobOutput.data).where(JobOutput.job_id == job_id)
                          .order_by(JobOutput.seq.desc()).limit(200)):
        chunks.append(data)
        size += len(data)
        if size > TAIL_BYTES * 2 or b"".join(chunks).count(b"\n") > lines:
            break
    text = b"".join(reversed(chunks)).decode("utf-8", "replace")
    tail = text.splitlines()[-lines:]
    out: list[str] = []
    total = 0
    for line in reversed(tail):
        total += len(line) + 1
        if total > TAIL_BYTES:
            break
        out.append(line)
    return list(reversed(out))


def _seconds(begin: datetime | None, end: datetime | None) -> float | None:
    if begin is None or end is None:
        return None
    return round((end - begin).total_seconds(), 3)


def job_summary(s: Session, job_id: int, *, trigger: str, action: dict[str, Any],
                secrets: Sequence[str] = ()) -> dict[str, Any]:
    job = s.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} no longer exists")
    company = s.get(Company, job.company_id)
    app = s.get(Application, job.app_id)
    rt = s.get(RunTemplate, job.runtemplate_id) if job.runtemplate_id else None
    arts = s.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id))
    meaning = exit_meaning(s, job)
    tail = [mask_text(line, secrets) for line in output_tail(s, job_id)]
    return {
        "event": "job.ended",
        "trigger": trigger,
        "sample": False,
        "multiflexi": multiflexi.__version__,
        "action": action,
        "job": {
            "id": job.id, "state": job.state, "exitcode": job.exitcode,
            "exit_meaning": ({"description": meaning["description"],
                              "severity": meaning["severity"]} if meaning else None),
            "reason": job.reason, "schedule_type": job.schedule_type,
            "begin": iso(job.begin), "end": iso(job.end),
            "duration_seconds": _seconds(job.begin, job.end), "node": job.node,
            "launched_by": job.launched_by, "attempt": job.attempt,
            "retry_of": job.retry_of_id,
        },
        "company": {"id": job.company_id, "slug": company.slug if company else None,
                    "name": company.name if company else None},
        "application": {"id": job.app_id, "name": app.name if app else None,
                        "uuid": app.uuid if app else None,
                        "homepage": app.homepage if app else None},
        "runtemplate": {"id": job.runtemplate_id,
                        "name": rt.name if rt else job.runtemplate_name},
        "output_tail": tail,
        "artifacts": [{"id": a.id, "name": a.name, "filename": a.filename, "size": a.size,
                       "content_type": a.content_type, "stored": not a.skipped}
                      for a in arts],
        "report": ({"status": job.report_status, "message": job.report_message}
                   if job.report_status else None),
    }


def sample_summary(s: Session, company: Company, rt: RunTemplate | None, *, trigger: str,
                   action: dict[str, Any]) -> dict[str, Any]:
    """What `action test` sends: a made-up job of the template (``sample: true``, job id 0)
    that ended as the trigger expects (a company's action: of its first template)."""
    app = s.get(Application, rt.app_id) if rt is not None else None
    now = datetime.now(UTC)
    failed = trigger == "failure"
    return {
        "event": "job.ended", "trigger": trigger, "sample": True,
        "multiflexi": multiflexi.__version__, "action": action,
        "job": {"id": 0, "state": "failed" if failed else "succeeded",
                "exitcode": 1 if failed else 0, "exit_meaning": None,
                "reason": "a sample job of `action test`", "schedule_type": "adhoc-cli",
                "begin": iso(now), "end": iso(now), "duration_seconds": 0.0,
                "node": None, "launched_by": "action test", "attempt": 1, "retry_of": None},
        "company": {"id": company.id, "slug": company.slug, "name": company.name},
        "application": {"id": app.id if app else None, "name": app.name if app else None,
                        "uuid": app.uuid if app else None,
                        "homepage": app.homepage if app else None},
        "runtemplate": {"id": rt.id if rt else None, "name": rt.name if rt else None},
        "output_tail": ["(sample output of `action test`)"],
        "artifacts": [],
        "report": None,
    }


def headline(summary: dict[str, Any]) -> str:
    """``acme · nightly import: failed (exit 3: Invalid configuration)``."""
    job = summary["job"]
    what = job["state"]
    if job.get("exitcode") is not None:
        meaning = job.get("exit_meaning")
        what += f" (exit {job['exitcode']}" + (f": {meaning['description']}" if meaning
                                               and meaning.get("description") else "") + ")"
    sample = " [test]" if summary.get("sample") else ""
    return (f"{summary['company']['slug'] or '?'} · {summary['runtemplate']['name'] or '?'}: "
            f"{what}{sample}")


def text_body(summary: dict[str, Any]) -> str:
    """The summary as plain text for people (mail, chat, issues)."""
    job = summary["job"]
    meaning = job.get("exit_meaning")
    exit_text = "-" if job.get("exitcode") is None else str(job["exitcode"])
    if meaning:
        exit_text += f" ({meaning.get('severity')}: {meaning.get('description')})"
    lines = [
        f"Company:      {summary['company']['name']} ({summary['company']['slug']})",
        f"Template:     {summary['runtemplate']['name']} (#{summary['runtemplate']['id']})",
        f"Application:  {summary['application']['name']}",
        f"Job:          #{job['id']} {job['state']}, attempt {job['attempt']}, "
        f"{job['schedule_type']}",
        f"Exit code:    {exit_text}",
    ]
    if job.get("reason"):
        lines.append(f"Reason:       {job['reason']}")
    lines += [
        f"Began/ended:  {job.get('begin') or '-'} / {job.get('end') or '-'}"
        + (f" ({job['duration_seconds']} s)" if job.get("duration_seconds") is not None
           else ""),
        f"Node:         {job.get('node') or '-'}, launched by {job.get('launched_by') or '-'}",
    ]
    report = summary.get("report")
    if report:
        lines.append(f"Report:       {report['status']}: {report.get('message') or ''}")
    if summary.get("artifacts"):
        lines.append("Artifacts:    " + ", ".join(
            f"{a['filename']} ({a['size']} bytes)" for a in summary["artifacts"]))
    lines += ["", "Last lines of output:", *("  " + line for line in summary["output_tail"])]
    return "\n".join(lines) + "\n"
