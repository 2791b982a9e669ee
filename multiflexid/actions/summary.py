"""The summary every action gets (WebHook's JSON payload, Notify's text, the variables
of CustomCommand, the body of an issue): of the job that ended (``job.ended``) or of the
tick that missed its deadline or was done late (``tick.missed``, ``tick.late``: the tick
and the template's last job). Its shape is documented in README.md.

Output is stored masked already (the dispatcher masks secrets before writing); the tail
here is masked once more with the action's own secrets, in case a job printed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import multiflexi
from multiflexid.domain.config import mask_text
from multiflexid.presenters import iso
from multiflexid.services.jobs import exit_meaning
from multiflexid.store.orm import (
    Application,
    Artifact,
    Company,
    Job,
    JobOutput,
    RunTemplate,
    RunTemplateTick,
)

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


def _company(company: Company | None, company_id: int) -> dict[str, Any]:
    return {"id": company_id, "slug": company.slug if company else None,
            "name": company.name if company else None}


def _application(app: Application | None, app_id: int | None) -> dict[str, Any]:
    return {"id": app_id, "name": app.name if app else None,
            "uuid": app.uuid if app else None, "homepage": app.homepage if app else None}


def _job_parts(s: Session, job: Job, secrets: Sequence[str]) -> dict[str, Any]:
    """The job and what belongs to it: its company, application, template, output tail
    (masked), artifacts and result report."""
    company = s.get(Company, job.company_id)
    app = s.get(Application, job.app_id)
    rt = s.get(RunTemplate, job.runtemplate_id) if job.runtemplate_id else None
    arts = s.scalars(select(Artifact).where(Artifact.job_id == job.id).order_by(Artifact.id))
    meaning = exit_meaning(s, job)
    tail = [mask_text(line, secrets) for line in output_tail(s, job.id)]
    return {
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
        "company": _company(company, job.company_id),
        "application": _application(app, job.app_id),
        "runtemplate": {"id": job.runtemplate_id,
                        "name": rt.name if rt else job.runtemplate_name},
        "output_tail": tail,
        "artifacts": [{"id": a.id, "name": a.name, "filename": a.filename, "size": a.size,
                       "content_type": a.content_type, "stored": not a.skipped}
                      for a in arts],
        "report": ({"status": job.report_status, "message": job.report_message}
                   if job.report_status else None),
    }


def _head(event: str, trigger: str, action: dict[str, Any], sample: bool = False
          ) -> dict[str, Any]:
    return {"event": event, "trigger": trigger, "sample": sample,
            "multiflexi": multiflexi.__version__, "action": action}


def job_summary(s: Session, job_id: int, *, trigger: str, action: dict[str, Any],
                secrets: Sequence[str] = ()) -> dict[str, Any]:
    job = s.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} no longer exists")
    return {**_head("job.ended", trigger, action), **_job_parts(s, job, secrets)}


# A tick's trigger -> (its event, the tick's outcome it reports)
TICK_EVENTS = {"missed": ("tick.missed", "missed"),
               "late": ("tick.late", "fulfilled_late")}


def _last_job(s: Session, tick: RunTemplateTick, trigger: str) -> Job | None:
    """The job the tick counts (a late success, a failure after the deadline), else the
    template's latest job made by the time the tick was missed (one still running, a
    blocked one, or an older one: its times say)."""
    if tick.job_id is not None:
        return s.get(Job, tick.job_id)
    by = tick.missed_at if trigger == "missed" else tick.settled_at
    query = select(Job).where(Job.runtemplate_id == tick.runtemplate_id)
    if by is not None:
        query = query.where(Job.created_at <= by)
    return s.scalar(query.order_by(Job.id.desc()).limit(1))


def _rule(rt: RunTemplate | None) -> str | None:
    """The template's deadline as it is set (``07:00``, ``+2h``)."""
    from multiflexid.domain.deadline import Deadline

    deadline = Deadline.of(rt.deadline_time, rt.deadline_after) if rt is not None else None
    return deadline.describe() if deadline is not None else None


def _tick_part(tick: RunTemplateTick | None, trigger: str, rt: RunTemplate | None, *,
               tick_at: datetime, deadline: datetime) -> dict[str, Any]:
    return {"id": tick.id if tick else 0, "tick": iso(tick_at), "deadline": iso(deadline),
            "deadline_rule": _rule(rt), "outcome": TICK_EVENTS[trigger][1],
            "missed_at": iso(tick.missed_at) if tick else None,
            "settled_at": iso(tick.settled_at) if tick else None}


def tick_summary(s: Session, tick_id: int | None, *, trigger: str, action: dict[str, Any],
                 secrets: Sequence[str] = ()) -> dict[str, Any]:
    """A tick that missed its deadline or was done late: the tick, its template, company
    and application, and its last job (as in a job's summary; None when there is none)."""
    tick = s.get(RunTemplateTick, tick_id) if tick_id is not None else None
    if tick is None:
        raise LookupError(f"tick {tick_id} no longer exists (its run template was removed)")
    rt = s.get(RunTemplate, tick.runtemplate_id)
    job = _last_job(s, tick, trigger)
    parts: dict[str, Any] = {
        "job": None, "company": _company(s.get(Company, tick.company_id), tick.company_id),
        "application": _application(s.get(Application, tick.app_id), tick.app_id),
        "runtemplate": {"id": tick.runtemplate_id, "name": rt.name if rt else None},
        "output_tail": [], "artifacts": [], "report": None}
    if job is not None:
        parts.update({k: v for k, v in _job_parts(s, job, secrets).items()
                      if k not in ("company", "application", "runtemplate")})
    return {**_head(TICK_EVENTS[trigger][0], trigger, action),
            "tick": _tick_part(tick, trigger, rt, tick_at=tick.tick, deadline=tick.deadline),
            **parts}


def sample_summary(s: Session, company: Company, rt: RunTemplate | None, *, trigger: str,
                   action: dict[str, Any]) -> dict[str, Any]:
    """What `action test` sends: a made-up job of the template (``sample: true``, job id 0)
    that ended as the trigger expects (a company's action: of its first template); for
    ``missed`` and ``late`` a made-up tick of it (id 0) whose deadline was an hour ago."""
    app = s.get(Application, rt.app_id) if rt is not None else None
    now = datetime.now(UTC)
    failed = trigger in ("failure", "missed")
    parts: dict[str, Any] = {
        "job": {"id": 0, "state": "failed" if failed else "succeeded",
                "exitcode": 1 if failed else 0, "exit_meaning": None,
                "reason": "a sample job of `action test`", "schedule_type": "adhoc-cli",
                "begin": iso(now), "end": iso(now), "duration_seconds": 0.0,
                "node": None, "launched_by": "action test", "attempt": 1, "retry_of": None},
        "company": _company(company, company.id),
        "application": _application(app, app.id if app else None),
        "runtemplate": {"id": rt.id if rt else None, "name": rt.name if rt else None},
        "output_tail": ["(sample output of `action test`)"],
        "artifacts": [],
        "report": None,
    }
    if trigger not in TICK_EVENTS:
        return {**_head("job.ended", trigger, action, sample=True), **parts}
    deadline = now - timedelta(hours=1)
    tick = _tick_part(None, trigger, rt, tick_at=deadline - timedelta(hours=2),
                      deadline=deadline)
    tick.update({"missed_at": iso(deadline),
                 "settled_at": iso(now if trigger == "late" else deadline)})
    return {**_head(TICK_EVENTS[trigger][0], trigger, action, sample=True), "tick": tick,
            **parts}


def _job_state(job: dict[str, Any]) -> str:
    """``failed (exit 3: Invalid configuration)``."""
    what = str(job["state"])
    if job.get("exitcode") is not None:
        meaning = job.get("exit_meaning")
        what += f" (exit {job['exitcode']}" + (f": {meaning['description']}" if meaning
                                               and meaning.get("description") else "") + ")"
    return what


def headline(summary: dict[str, Any]) -> str:
    """``acme · nightly import: failed (exit 3: Invalid configuration)``; a tick's:
    ``acme · bank import: deadline missed (07:00, tick 2026-05-04T03:00:00Z)``."""
    tick = summary.get("tick")
    if tick is not None:
        what = "deadline missed" if tick["outcome"] == "missed" else "done after its deadline"
        what += f" ({tick.get('deadline_rule') or tick['deadline']}, tick {tick['tick']})"
    else:
        what = _job_state(summary["job"])
    sample = " [test]" if summary.get("sample") else ""
    return (f"{summary['company']['slug'] or '?'} · {summary['runtemplate']['name'] or '?'}: "
            f"{what}{sample}")


def _job_lines(job: dict[str, Any]) -> list[str]:
    meaning = job.get("exit_meaning")
    exit_text = "-" if job.get("exitcode") is None else str(job["exitcode"])
    if meaning:
        exit_text += f" ({meaning.get('severity')}: {meaning.get('description')})"
    lines = [f"Job:          #{job['id']} {job['state']}, attempt {job['attempt']}, "
             f"{job['schedule_type']}",
             f"Exit code:    {exit_text}"]
    if job.get("reason"):
        lines.append(f"Reason:       {job['reason']}")
    return [*lines,
            f"Began/ended:  {job.get('begin') or '-'} / {job.get('end') or '-'}"
            + (f" ({job['duration_seconds']} s)" if job.get("duration_seconds") is not None
               else ""),
            f"Node:         {job.get('node') or '-'}, launched by "
            f"{job.get('launched_by') or '-'}"]


def _tick_lines(tick: dict[str, Any]) -> list[str]:
    outcome = ("missed: not done by its deadline" if tick["outcome"] == "missed"
               else "fulfilled late: done after its deadline")
    return [f"Tick:         {tick['tick']}",
            f"Deadline:     {tick['deadline']}"
            + (f" ({tick['deadline_rule']})" if tick.get("deadline_rule") else ""),
            f"Outcome:      {outcome}"]


def text_body(summary: dict[str, Any]) -> str:
    """The summary as plain text for people (mail, chat, issues)."""
    job = summary["job"]
    tick = summary.get("tick")
    lines = [
        f"Company:      {summary['company']['name']} ({summary['company']['slug']})",
        f"Template:     {summary['runtemplate']['name']} (#{summary['runtemplate']['id']})",
        f"Application:  {summary['application']['name']}",
    ]
    if tick is not None:
        lines += _tick_lines(tick)
        if job is None:
            lines.append("Last job:     none")
            return "\n".join(lines) + "\n"
        lines.append("Last job:")
    lines += _job_lines(job)
    report = summary.get("report")
    if report:
        lines.append(f"Report:       {report['status']}: {report.get('message') or ''}")
    if summary.get("artifacts"):
        lines.append("Artifacts:    " + ", ".join(
            f"{a['filename']} ({a['size']} bytes)" for a in summary["artifacts"]))
    lines += ["", "Last lines of output:", *("  " + line for line in summary["output_tail"])]
    return "\n".join(lines) + "\n"
