"""Run templates: an application bound to a company with configuration and a schedule."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import AppDefinition
from multiflexid.domain.config import (
    ConfigError,
    ResolvedEnv,
    is_secret_key,
    normalize,
)
from multiflexid.domain.deadline import DeadlineError, parse_span, parse_time_of_day
from multiflexid.domain.jobstate import JobEnded
from multiflexid.domain.schedule import Recurrence, ScheduleError, next_due, upcoming
from multiflexid.presenters import iso, last_job_dict, runtemplate_dict
from multiflexid.store.audit import Actor, note, set_actor
from multiflexid.store.deadlines import first_tracked_tick, stop_tracking
from multiflexid.store.orm import (
    Application,
    Company,
    Credential,
    Job,
    RunTemplate,
    RunTemplateConfig,
    RunTemplateCredential,
    RunTemplateTag,
)
from multiflexid.store.transitions import Batch, JobTransitions, NewJob
from multiflexid.store.types import utcnow

from . import deadlines
from .apps import get_app, to_definition
from .credentials import get_credential
from .environment import (  # noqa: F401 (get_runtemplate, Identity... are used from here)
    _WITH_PARTS,
    Identity,
    environment,
    find_runtemplate,
    get_runtemplate,
    injected_variables,
    load_context,
    template_config,
)
from .jobs import cancel_queued_of_template, create_job
from .lifecycle import job_fields

EXECUTORS = ("Native", "Podman", "Docker")
# Executors that run the app's (or the template's) container image.
CONTAINER_EXECUTORS = ("Podman", "Docker")
BACKOFFS = ("none", "fixed", "linear", "exponential")
INTERVAL_CODES = ("i", "h", "d", "w", "m", "y", "c", "n")
_TAG = re.compile(r"^[a-z0-9][a-z0-9_.:/+-]{0,63}$")
MAX_NOTE = 4000


def check_tag(tag: str) -> str:
    """A tag as stored: lower case, 1-64 letters, digits, ``_ . : / + -``."""
    norm = tag.strip().lower()
    if not _TAG.match(norm):
        raise InvalidInput(f"tags: {tag!r} is not a tag (1-64 letters, digits, '_', '.', "
                           "':', '/', '+' or '-', starting with a letter or digit)")
    return norm


def tagged(tag: str) -> Any:
    """The condition "the template has this tag" (for a query of run templates)."""
    return RunTemplate.id.in_(select(RunTemplateTag.runtemplate_id)
                              .where(RunTemplateTag.tag == check_tag(tag)))


def set_tags(rt: RunTemplate, tags: Iterable[str]) -> None:
    """Replace the template's tags."""
    wanted = sorted({check_tag(t) for t in tags})
    for row in [t for t in rt.tags if t.tag not in wanted]:
        rt.tags.remove(row)
    have = {t.tag for t in rt.tags}
    rt.tags.extend(RunTemplateTag(tag=t) for t in wanted if t not in have)


def list_runtemplates(
    s: Session, company: Company | None = None, app: Application | None = None,
    tag: str | None = None,
) -> list[RunTemplate]:
    query = select(RunTemplate).options(*_WITH_PARTS).order_by(RunTemplate.id)
    if company is not None:
        query = query.where(RunTemplate.company_id == company.id)
    if app is not None:
        query = query.where(RunTemplate.app_id == app.id)
    if tag is not None:
        query = query.where(tagged(tag))
    return list(s.scalars(query))


def recurrence(rt: RunTemplate) -> Recurrence:
    return Recurrence(rt.interv, rt.cron, rt.timezone, rt.delay)


def preview(rec: Recurrence, start: datetime, count: int) -> dict[str, Any]:
    """The next ``count`` due times after ``start``: tick and due in UTC, due in the
    schedule's own zone (the system's when it names none) — for `runtemplate preview`,
    the socket's runtemplate.preview and the wizard's schedule.preview alike."""
    try:
        rec.validate()
        times = upcoming(rec, start, count)
    except ScheduleError as exc:
        raise InvalidInput(str(exc)) from None
    zone = ZoneInfo(rec.timezone.strip()) if rec.timezone and rec.timezone.strip() else None
    return {
        "timezone": rec.timezone,
        "due": [{"tick": iso(t), "due": iso(due),
                 "local": (due.astimezone(zone) if zone else due.astimezone()).isoformat()}
                for t, due in times],
    }


def reschedule(rt: RunTemplate, now: datetime) -> None:
    """Set the next due time from now (None when inactive or interval ``n``)."""
    nxt = next_due(recurrence(rt), now) if rt.active else None
    rt.next_schedule = nxt[0] if nxt else None


def _check_schedule(values: dict[str, Any]) -> None:
    interv = values.get("interv")
    if interv is not None and interv not in INTERVAL_CODES:
        raise InvalidInput(
            f"interv: {interv!r} is not one of {' '.join(INTERVAL_CODES)} "
            "(i minutely, h hourly, d daily, w weekly, m monthly, y yearly, c cron, n never)"
        )
    executor = values.get("executor")
    if executor is not None and executor not in EXECUTORS:
        raise InvalidInput(f"executor: {executor!r} is not one of {', '.join(EXECUTORS)}")
    backoff = values.get("retry_backoff")
    if backoff is not None and backoff not in BACKOFFS:
        raise InvalidInput(f"retry_backoff: {backoff!r} is not one of {', '.join(BACKOFFS)}")
    for key in ("delay", "timeout", "retry_min_gap", "pids_limit"):
        if values.get(key) is not None and int(values[key]) < 0:
            raise InvalidInput(f"{key}: must not be negative")
    if values.get("max_attempts") is not None and int(values["max_attempts"]) < 1:
        raise InvalidInput("max_attempts: must be at least 1 (the first run counts)")


_FIELDS = (
    "name", "interv", "cron", "timezone", "delay", "executor", "active", "timeout",
    "max_attempts", "retry_backoff", "retry_min_gap", "ociimage", "memory_limit", "cpu_limit",
    "pids_limit", "network", "inherit_actions", "deadline_time", "deadline_after", "note",
)
# What the deadline of each tick depends on: a change starts tracking afresh.
_TRACKING = ("interv", "cron", "timezone", "delay", "active", "deadline_time",
             "deadline_after")


def _apply_deadline(rt: RunTemplate, values: dict[str, Any]) -> None:
    """``deadline_time`` (HH:MM) or ``deadline_after`` (a duration): one replaces the other;
    an empty value removes the deadline."""
    at, after = values.pop("deadline_time", None), values.pop("deadline_after", None)
    if at not in (None, "") and after not in (None, ""):
        raise InvalidInput("deadline: give either a time of day (--deadline) or a span "
                           "(--deadline-after), not both")
    try:
        if "" in (at, after):
            rt.deadline_time = rt.deadline_after = None
        elif at is not None:
            rt.deadline_time, rt.deadline_after = parse_time_of_day(str(at)), None
        elif after is not None:
            rt.deadline_time, rt.deadline_after = None, parse_span(after)
    except DeadlineError as exc:
        raise InvalidInput(str(exc)) from None


def _tracking(rt: RunTemplate) -> tuple[Any, ...]:
    return tuple(getattr(rt, key) for key in _TRACKING)


def _apply(rt: RunTemplate, values: dict[str, Any], now: datetime) -> None:
    _check_schedule(values)
    values = dict(values)
    _apply_deadline(rt, values)
    for key, value in values.items():
        if key not in _FIELDS:
            raise InvalidInput(f"{key}: not a run-template setting")
        if value is None:
            continue
        if key == "name":
            value = str(value).strip()
            if not value:
                raise InvalidInput("name: must not be empty")
        if key == "note":
            value = str(value).strip() or None
            if value is not None and len(value) > MAX_NOTE:
                raise InvalidInput(f"note: at most {MAX_NOTE} characters")
        if key in ("cron", "timezone", "ociimage", "network", "memory_limit") and value == "":
            value = None
        setattr(rt, key, value)
        if key == "active" and value:
            rt.inactive_reason = None  # an admin switched it on again
    if rt.interv == "c" and not (rt.cron or "").strip():
        raise InvalidInput("cron: interval c (custom) needs --cron, e.g. --cron '30 2 * * *'")
    try:
        recurrence(rt).validate()
    except ScheduleError as exc:
        raise InvalidInput(str(exc)) from None
    reschedule(rt, now)


def _check_image(app: Application, executor: str | None, ociimage: str | None) -> None:
    """A container executor needs an image: the application's or the template's own."""
    if executor in CONTAINER_EXECUTORS and not app.ociimage and not ociimage:
        raise InvalidInput(
            f"executor: application {app.name!r} has no ociimage, so it runs with the Native "
            f"executor only (or give the template an image: --ociimage)"
        )


def create_runtemplate(
    s: Session,
    app: Application,
    company: Company,
    box: SecretBox,
    now: datetime,
    *,
    config: dict[str, str] | None = None,
    credential_ids: list[int] | None = None,
    secret: Iterable[str] = (),
    tags: Iterable[str] = (),
    **values: Any,
) -> RunTemplate:
    values.setdefault("interv", "n")
    values.setdefault("executor", "Native")
    _check_image(app, values.get("executor"), values.get("ociimage"))
    rt = RunTemplate(
        app_id=app.id, company_id=company.id, name="", active=True, delay=0, max_attempts=1,
        retry_backoff="none", retry_min_gap=60, successful_jobs_count=0, failed_jobs_count=0,
    )
    rt.config = []
    rt.credentials = []
    rt.tags = []
    set_tags(rt, tags)
    _apply(rt, values, now)
    rt.deadline_next_tick = first_tracked_tick(rt, now)
    credentials = [get_credential(s, cred_id) for cred_id in credential_ids or []]
    for cred in credentials:  # refused before anything is written
        _check_owner(s, cred, company, f"the new run template {rt.name!r}")
    s.add(rt)
    s.flush()
    definition = to_definition(get_app(s, app.id, parts=True))
    if config:
        set_config(rt, definition, config, [], box, secret)
    for cred in credentials:
        assign_credential(s, rt, cred)
    s.flush()
    return rt


def update_runtemplate(s: Session, rt: RunTemplate, now: datetime, *,
                       tags: Iterable[str] | None = None, **values: Any) -> RunTemplate:
    """Change settings given in ``values``; ``tags``: the whole new set (None: kept)."""
    if tags is not None:
        set_tags(rt, tags)
    if values.get("executor") is not None or values.get("ociimage") == "":
        app = s.get(Application, rt.app_id)
        if app is not None:
            image = values["ociimage"] if "ociimage" in values else rt.ociimage
            _check_image(app, values.get("executor") or rt.executor, image)
    before = _tracking(rt)
    _apply(rt, values, now)
    if _tracking(rt) != before:  # its ticks' deadlines are not what they were
        stop_tracking(s, rt.id)
        rt.deadline_next_tick = first_tracked_tick(rt, now)
    s.flush()
    return rt


# --- configuration ---------------------------------------------------------------------------


def set_config(
    rt: RunTemplate, app: AppDefinition, values: dict[str, str], unset: list[str], box: SecretBox,
    secret: Iterable[str] = (),
) -> None:
    """Set overrides (checked against the app's field types; secret ones encrypted: the
    app's secret fields, keys named like secrets, and the keys in ``secret``)."""
    rt.updated_at = utcnow()  # the daemon's launch cache keys on it
    for key in unset:
        row = next((c for c in rt.config if c.key == key), None)
        if row is None:
            raise InvalidInput(f"{key}: not set on run template {rt.id}")
        rt.config.remove(row)
    for key, value in values.items():
        if not key or "=" in key:
            raise InvalidInput(f"{key!r}: not a valid configuration key")
        fdef = app.env_field(key)
        hidden = is_secret_key(key, fdef, secret)
        if fdef is not None:
            try:
                value = normalize(fdef.type, value, key, fdef.options)
            except ConfigError as exc:
                raise InvalidInput(
                    f"{key}: value does not fit type {fdef.type}" if hidden else str(exc)
                ) from None
        stored = box.encrypt(value) if hidden else value
        row = next((c for c in rt.config if c.key == key), None)
        if row is None:
            rt.config.append(RunTemplateConfig(key=key, value=stored, encrypted=hidden))
        else:
            row.value, row.encrypted = stored, hidden


def _check_owner(s: Session, cred: Credential, company: Company, template: str) -> None:
    """Tenant isolation: a template only ever gets credentials of its own company."""
    if cred.company_id != company.id:
        owner = s.get(Company, cred.company_id)
        raise Conflict(
            f"credential {cred.id} belongs to company {owner.slug if owner else '?'}; "
            f"{template} is of company {company.slug}: refused"
        )


def assign_credential(s: Session, rt: RunTemplate, cred: Credential) -> None:
    rt.updated_at = utcnow()  # the daemon's launch cache keys on it
    company = s.get(Company, rt.company_id)
    assert company is not None
    _check_owner(s, cred, company, f"run template {rt.id}")
    if any(c.credential_id == cred.id for c in rt.credentials):
        raise Conflict(f"credential {cred.id} is already assigned to run template {rt.id}")
    rt.credentials.append(RunTemplateCredential(credential_id=cred.id))


def unassign_credential(rt: RunTemplate, cred_id: int) -> None:
    rt.updated_at = utcnow()  # the daemon's launch cache keys on it
    row = next((c for c in rt.credentials if c.credential_id == cred_id), None)
    if row is None:
        raise NotFound(f"credential {cred_id} is not assigned to run template {rt.id}")
    rt.credentials.remove(row)


def resolve_env(
    s: Session,
    rt: RunTemplate,
    box: SecretBox,
    *,
    overrides: dict[str, str] | None = None,
    job_id: int | None = None,
    job_dir: str | None = None,
    executor: str | None = None,
    secret: Iterable[str] = (),
) -> ResolvedEnv:
    """The environment a job of ``rt`` gets (see multiflexid.services.environment)."""
    return environment(load_context(s, rt.id, box), executor=executor or rt.executor,
                       overrides=overrides, override_secret=secret, job_id=job_id,
                       job_dir=job_dir)


def run_now(
    s: Session, tx: JobTransitions, box: SecretBox, rt_ref: int | str | RunTemplate,
    overrides: dict[str, str], *, secret: Iterable[str] = (), launched_by: str,
    schedule_type: str, now: datetime, what: str = "",
) -> tuple[Job, dict[str, Any]]:
    """"Run now", whoever asks (the socket, the CLI with or without the daemon): the
    one-off values must fit their fields (an error names each, prefixed by ``what``),
    then the job is queued to run at once (``pending`` while the template's job runs).
    Returns the job and its journal fields."""
    rt = rt_ref if isinstance(rt_ref, RunTemplate) else get_runtemplate(s, rt_ref)
    if not overrides:  # only one-off values need the environment resolved (to check them)
        return run_now_many(s, tx, [NewJob(rt, schedule_type, launched_by)], now)[0]
    resolved = resolve_env(s, rt, box, overrides=overrides, secret=secret)
    bad = [e for e in resolved.errors if e.split(":")[0] in overrides]
    if bad:
        raise InvalidInput("; ".join(what + e for e in bad))
    secret_keys = {k for k in overrides if k in resolved.values and resolved.values[k].secret}
    job = create_job(s, tx, rt, schedule_type=schedule_type, launched_by=launched_by,
                     after=now, box=box, overrides=overrides, secret=secret)
    fields = job_fields(s, job)
    _note_queued(s, rt, job, schedule_type, fields, overrides, secret_keys)
    return job, fields


def run_now_many(s: Session, tx: JobTransitions, asked: Sequence[NewJob], now: datetime,
                 actors: Sequence[Actor] | None = None) -> list[tuple[Job, dict[str, Any]]]:
    """"Run now" of many jobs without one-off values in one statement (the socket's calls
    of one commit, a bulk run): each queued and audited as :func:`run_now` does it —
    as ``actors`` (one per job; default: the session's). Returns each job and its
    journal fields, in order."""
    made = []
    before = s.info.get("actor")
    try:
        for i, job in enumerate(tx.create_now(s, asked, now)):
            if actors is not None:
                set_actor(s, actors[i])
            fields = job_fields(s, job)
            _note_queued(s, asked[i].rt, job, asked[i].schedule_type, fields, {}, set())
            made.append((job, fields))
    finally:
        set_actor(s, before)
    return made


def _note_queued(s: Session, rt: RunTemplate, job: Job, schedule_type: str,
                 fields: dict[str, Any], overrides: dict[str, str], secret_keys: set[str]
                 ) -> None:
    note(s, "job", job.id, rt.company_id, "run",
         f"job {job.id} of run template {rt.id} {rt.name!r} queued ({schedule_type})",
         {"runtemplate_id": [None, rt.id]} | {
             f"env.{k}": [None, "(secret)" if k in secret_keys else v]
             for k, v in overrides.items()},
         {k: v for k, v in fields.items() if k != "MULTIFLEXI_JOB_ID"}, runtemplate_id=rt.id)


def remove_runtemplate(s: Session, tx: JobTransitions, rt: RunTemplate, now: datetime
                       ) -> Batch[JobEnded]:
    """Delete the template; its finished jobs stay in history (their template id becomes
    empty, name and ids are kept on the job); jobs still queued are cancelled (those a
    node started meanwhile are in the result's ``skipped``: they run to their end)."""
    cancelled = cancel_queued_of_template(s, tx, rt, f"run template {rt.id} was removed", now)
    s.delete(rt)
    return cancelled


# --- views -------------------------------------------------------------------------------


def runtemplate_views(s: Session, rows: list[RunTemplate], now: datetime | None = None
                      ) -> list[dict[str, Any]]:
    """Templates as the socket lists them (app name, company slug, last job, the state of
    the current tick when it has a deadline)."""
    app_names = dict(s.execute(select(Application.id, Application.name)).all())
    slugs = dict(s.execute(select(Company.id, Company.slug)).all())
    ticks = deadlines.current_ticks(s, rows, now or utcnow())
    tags: dict[int, list[str]] = {}
    for rt_id, tag in s.execute(select(RunTemplateTag.runtemplate_id, RunTemplateTag.tag)
                                .where(RunTemplateTag.runtemplate_id.in_([r.id for r in rows]))
                                .order_by(RunTemplateTag.tag)):
        tags.setdefault(rt_id, []).append(tag)
    out = []
    for rt in rows:
        view = runtemplate_dict(rt, app_names.get(rt.app_id), slugs.get(rt.company_id))
        view["tags"] = tags.get(rt.id, [])
        view["last_job"] = _last_job(s, rt.id)
        view["tick"] = ticks.get(rt.id)
        out.append(view)
    return out


def _last_job(s: Session, rt_id: int) -> dict[str, Any] | None:
    return last_job_dict(s.scalar(select(Job).where(Job.runtemplate_id == rt_id)
                                  .order_by(Job.id.desc()).limit(1)))


def runtemplate_view(s: Session, rt: RunTemplate, now: datetime | None = None
                     ) -> dict[str, Any]:
    """One template as the socket shows it (with config keys and credentials)."""
    app = s.get(Application, rt.app_id)
    company = s.get(Company, rt.company_id)
    view = runtemplate_dict(rt, app.name if app else None, company.slug if company else None,
                            parts=True)
    view["last_job"] = _last_job(s, rt.id)
    view["tick"] = deadlines.current_ticks(s, [rt], now or utcnow())[rt.id]
    return view
