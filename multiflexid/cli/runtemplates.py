"""``runtemplate`` (alias ``run-template``) commands."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from multiflexid.presenters import job_dict, runtemplate_dict
from multiflexid.services import deadlines
from multiflexid.services import runtemplates as svc
from multiflexid.services.apps import get_app, to_definition
from multiflexid.services.companies import get_company
from multiflexid.services.credentials import get_credential
from multiflexid.services.jobs import parse_assignments
from multiflexid.store.orm import Application, Company, RunTemplate

from . import live
from .base import AliasGroup, emit, fields, parse_time, state, table


@click.group(cls=AliasGroup)
def runtemplate() -> None:
    """Run templates: an application for a company, with its configuration and schedule."""


def _schedule_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--interv", type=click.Choice(svc.INTERVAL_CODES),
                     help="i minutely, h hourly, d daily, w weekly, m monthly, y yearly, "
                          "c custom cron, n never (default n)."),
        click.option("--cron", help="Cron expression for --interv c, e.g. '30 2 * * *'."),
        click.option("--tz", "timezone", help="IANA time zone, e.g. Europe/Prague "
                                             "(default: the system's)."),
        click.option("--delay", type=click.IntRange(min=0), help="Seconds after each tick."),
        click.option("--executor", type=click.Choice(svc.EXECUTORS),
                     help="Native, Podman or Docker (the containers need the application's "
                          "ociimage, or --ociimage; default Native)."),
        click.option("--timeout", type=click.IntRange(min=0),
                     help="Stop a job after this many seconds (0: never)."),
        click.option("--max-attempts", type=click.IntRange(min=1),
                     help="Runs in all, first included, when exit codes allow retries."),
        click.option("--retry-backoff", type=click.Choice(svc.BACKOFFS),
                     help="Gap growth between attempts."),
        click.option("--retry-min-gap", type=click.IntRange(min=0),
                     help="Seconds before a retry (the unit of the backoff)."),
        click.option("--ociimage", help="Podman/Docker: image instead of the application's."),
        click.option("--memory", "memory_limit",
                     help="Podman/Docker: memory limit, e.g. 512m."),
        click.option("--cpus", "cpu_limit", type=click.FloatRange(min=0),
                     help="Podman/Docker: CPUs, e.g. 1.5."),
        click.option("--pids-limit", type=click.IntRange(min=0),
                     help="Podman/Docker: max processes."),
        click.option("--network", help="Podman/Docker: network mode or name (default: none)."),
        click.option("--deadline", "deadline_time", metavar="HH:MM",
                     help="Each tick must succeed by this time of day in the template's zone "
                          "(the first HH:MM after the job is due), else it is missed."),
        click.option("--deadline-after", "deadline_after", metavar="DURATION",
                     help="Each tick must succeed this long after its job is due "
                          "(e.g. 2h, 90m, 1h30m), else it is missed."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


SECRET_HELP = ("(encrypted at rest, masked in listings and output). Repeatable. Values of "
               "the app's secret fields and of keys named like secrets (*PASSWORD*, "
               "*TOKEN*, *SECRET*, *APIKEY*, *_KEY) are kept secret anyway.")


def _secret_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--secret", "secret_items", multiple=True, metavar="KEY=VALUE",
                        help=f"{what} {SECRET_HELP}")


def _assignments(items: tuple[str, ...], secret_items: tuple[str, ...], what: str
                 ) -> tuple[dict[str, str], list[str]]:
    """``KEY=VALUE`` items and ``--secret`` ones: (all values, the keys marked secret)."""
    values = parse_assignments(items, what)
    secret = parse_assignments(secret_items, "--secret")
    return {**values, **secret}, sorted(secret)


def _names(s: Session, rt: RunTemplate) -> tuple[str | None, str | None]:
    app = s.get(Application, rt.app_id)
    company = s.get(Company, rt.company_id)
    return (app.name if app else None), (company.slug if company else None)


def _view(s: Session, rt: RunTemplate, now: datetime | None = None) -> dict[str, Any]:
    app_name, slug = _names(s, rt)
    d = runtemplate_dict(rt, app_name, slug, parts=True)
    d["config_keys"] = sorted(d["config_keys"])  # also right after set-config appended some
    d["tick"] = deadlines.current_ticks(s, [rt], now or datetime.now(UTC))[rt.id]
    return d


def tick_text(d: dict[str, Any]) -> str:
    """The current tick in a few words: ``missed 07:00``, ``late``, ``ok``, ``due 07:00``."""
    tick = d.get("tick")
    if not d.get("deadline"):
        return ""
    if not tick:
        return f"from next tick ({d['deadline']})"
    words = {"open": "due", "fulfilled": "ok", "fulfilled_late": "late", "failed": "FAILED",
             "missed": "MISSED"}
    deadline = tick["deadline"]
    return f"{words.get(tick['state'], tick['state'])} by {deadline}" \
        if tick["state"] in ("open", "missed", "failed") else words[tick["state"]]


def _show(d: dict[str, Any]) -> None:
    fields([(k, d[k]) for k in (
        "id", "name", "app", "company", "interv", "cron", "timezone", "delay", "executor",
        "active", "timeout", "max_attempts", "retry_backoff", "retry_min_gap", "next_schedule",
        "next_tick", "last_schedule", "successful_jobs_count", "failed_jobs_count",
        "last_success", "deadline",
    )] + [("current tick", tick_text(d))] + [(k, d[k]) for k in (
        "config_keys", "credentials", "inherit_actions", "tags", "note")]
        + ([("inactive_reason", d["inactive_reason"])] if d.get("inactive_reason") else []))


def _tag_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--note", help="A note for the next admin (free text; '' removes it).")(fn)
    return click.option("--tag", "tags", multiple=True, metavar="TAG",
                        help="A tag (lower case) to select it by in lists and bulk changes. "
                             "Repeatable; on update the whole new set.")(fn)


@runtemplate.command("create")
@click.option("--app", "app_ref", required=True, help="Application id or uuid.")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--name", required=True, help="Template name.")
@_schedule_options
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="Configuration override. Repeatable.")
@_secret_option("Configuration override kept secret")
@click.option("--credential", "credential_ids", multiple=True, type=int,
              help="Credential id of the same company to assign. Repeatable.")
@click.option("--inactive", is_flag=True, help="Create it inactive (never scheduled).")
@_tag_options
def create(app_ref: str, company_ref: str, config_items: tuple[str, ...],
           secret_items: tuple[str, ...], credential_ids: tuple[int, ...], inactive: bool,
           **values: Any) -> None:
    """Activate an application for a company."""
    config, secret = _assignments(config_items, secret_items, "--config")
    st = state()
    with st.session() as s:
        app = get_app(s, app_ref)
        company = get_company(s, company_ref)
        values = {k: v for k, v in values.items() if v is not None}
        rt = svc.create_runtemplate(
            s, app, company, st.core.box, datetime.now(UTC), config=config,
            credential_ids=list(credential_ids), active=not inactive, secret=secret, **values,
        )
        d = _view(s, rt)
    emit(d, f"created run template {d['id']} {d['name']!r} ({d['app']} for {d['company']}), "
            f"next run {d['next_schedule'] or 'never'}")


@runtemplate.command("list")
@click.option("--company", "company_ref", help="Only this company (id or slug).")
@click.option("--app", "app_ref", help="Only this application (id or uuid).")
@click.option("--late", is_flag=True,
              help="Only templates whose current tick is not done by its deadline (missed, "
                   "failed, still open) or was done late.")
@click.option("--tag", help="Only templates with this tag.")
def list_(company_ref: str | None, app_ref: str | None, late: bool, tag: str | None) -> None:
    """List run templates."""
    now = datetime.now(UTC)
    with state().read() as s:
        company = get_company(s, company_ref) if company_ref else None
        app = get_app(s, app_ref) if app_ref else None
        rows = [_view(s, rt, now) for rt in svc.list_runtemplates(s, company, app, tag)]
    if late:
        rows = [r for r in rows if r["tick"] and (
            r["tick"]["late"] or r["tick"]["state"] == "fulfilled_late")]
    emit(rows, lambda: table(
        [(r["id"], r["name"], r["app"], r["company"], r["interv"] + (
            f" {r['cron']}" if r["interv"] == "c" else ""), r["executor"],
          f"no: {r['inactive_reason']}" if r["inactive_reason"] and not r["active"]
          else r["active"], r["next_schedule"], tick_text(r), r["tags"]) for r in rows],
        ["id", "name", "app", "company", "interv", "executor", "active", "next", "deadline",
         "tags"],
    ))


@runtemplate.command("show")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
def show(rt_id: int) -> None:
    """Show a run template."""
    with state().read() as s:
        d = _view(s, svc.get_runtemplate(s, rt_id))
    emit(d, lambda: _show(d))


@runtemplate.command("update")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--name", help="New name.")
@_schedule_options
@click.option("--active/--inactive", default=None, help="Schedule it or not.")
@click.option("--company-actions/--no-company-actions", "inherit_actions", default=None,
              help="Whether the company's default actions apply to it (default: yes).")
@click.option("--no-deadline", is_flag=True, help="Remove the deadline.")
@_tag_options
@click.option("--no-tags", is_flag=True, help="Remove all its tags.")
def update(rt_id: int, no_deadline: bool, no_tags: bool, **values: Any) -> None:
    """Change a run template (schedule, executor, limits, retries, deadline, active, tags,
    note)."""
    if no_deadline:
        if values.get("deadline_time") or values.get("deadline_after"):
            raise click.UsageError("--no-deadline with --deadline or --deadline-after")
        values["deadline_time"] = ""
    if no_tags and values["tags"]:
        raise click.UsageError("--no-tags with --tag")
    values["tags"] = [] if no_tags else (values["tags"] or None)
    with state().session() as s:
        rt = svc.get_runtemplate(s, rt_id)
        svc.update_runtemplate(s, rt, datetime.now(UTC),
                               **{k: v for k, v in values.items() if v is not None})
        d = _view(s, rt)
    emit(d, lambda: _show(d))


@runtemplate.command("ticks")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many of the latest ticks.")
def ticks(rt_id: int, limit: int) -> None:
    """The latest tracked ticks of a template with a deadline, and how each went."""
    now = datetime.now(UTC)
    with state().read() as s:
        rt = svc.get_runtemplate(s, rt_id)
        d = {"id": rt.id, "deadline": _view(s, rt, now)["deadline"],
             "ticks": deadlines.history(s, rt.id, now, limit)}
    emit(d, lambda: table([(t["tick"], t["deadline"], t["state"], t["job_id"], t["settled_at"])
                           for t in d["ticks"]],
                          ["tick", "deadline", "state", "job", "settled"]))


@runtemplate.command("remove")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
def remove(rt_id: int) -> None:
    """Remove a run template. Its job history stays; its queued jobs are cancelled."""
    with state().session() as s:
        rt = svc.get_runtemplate(s, rt_id)
        d: dict[str, Any] = {"id": rt.id, "name": rt.name, "removed": True}
        cancelled = svc.remove_runtemplate(s, state().core.transitions, rt, datetime.now(UTC))
        d["cancelled_jobs"] = len(cancelled.done)
    emit(d, f"removed run template {d['id']} {d['name']!r}"
            + (f"; cancelled {d['cancelled_jobs']} queued job(s)" if d["cancelled_jobs"] else "")
            + (f"; not cancelled, started meanwhile (they run to their end): {cancelled}"
               if cancelled.skipped else ""))


@runtemplate.command("set-config")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--unset", "unset", multiple=True, metavar="KEY", help="Remove an override.")
@_secret_option("An override kept secret")
@click.argument("items", nargs=-1, metavar="KEY=VALUE...")
def set_config(rt_id: int, unset: tuple[str, ...], secret_items: tuple[str, ...],
               items: tuple[str, ...]) -> None:
    """Set configuration overrides (checked against the application's field types)."""
    if not items and not unset and not secret_items:
        raise click.UsageError("give KEY=VALUE arguments or --unset KEY "
                               "(--secret KEY=VALUE for a secret value)")
    values, secret = _assignments(items, secret_items, "KEY=VALUE")
    st = state()
    with st.session() as s:
        rt = svc.get_runtemplate(s, rt_id)
        app = to_definition(get_app(s, rt.app_id, parts=True))
        svc.set_config(rt, app, values, list(unset), st.core.box, secret)
        s.flush()
        d = _view(s, rt)
    emit(d, f"run template {d['id']}: configured {', '.join(d['config_keys']) or 'nothing'}")


@runtemplate.command("assign-credential")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--credential", "cred_id", type=int, required=True, help="Credential id.")
def assign_credential(rt_id: int, cred_id: int) -> None:
    """Assign a credential of the template's own company."""
    with state().session() as s:
        rt = svc.get_runtemplate(s, rt_id)
        svc.assign_credential(s, rt, get_credential(s, cred_id))
        s.flush()
        d = _view(s, rt)
    emit(d, f"run template {rt_id}: credential {cred_id} assigned")


@runtemplate.command("unassign-credential")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--credential", "cred_id", type=int, required=True, help="Credential id.")
def unassign_credential(rt_id: int, cred_id: int) -> None:
    """Take a credential off a run template."""
    with state().session() as s:
        rt = svc.get_runtemplate(s, rt_id)
        svc.unassign_credential(rt, cred_id)
        s.flush()
        d = _view(s, rt)
    emit(d, f"run template {rt_id}: credential {cred_id} unassigned")


@runtemplate.command("env")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--explain", is_flag=True, help="Show where each value comes from.")
@click.option("--reveal", is_flag=True, help="Show secret values in clear.")
def env(rt_id: int, explain: bool, reveal: bool) -> None:
    """The environment a job of this template would get (secrets masked)."""
    st = state()
    with st.read() as s:
        resolved = svc.resolve_env(s, svc.get_runtemplate(s, rt_id), st.core.box)
    rows = resolved.explain(reveal)
    doc = {"environment": rows if explain else {r["key"]: r["value"] for r in rows},
           "missing": resolved.missing, "errors": resolved.errors}

    def text() -> None:
        if explain:
            for r in rows:
                click.echo(f"{r['key']}={r['value']}")
                was = f" (overrides: {', '.join(r['overridden'])})" if r["overridden"] else ""
                click.echo(f"    from {r['source']}{was}")
        else:
            for r in rows:
                click.echo(f"{r['key']}={r['value']}")
        for key in resolved.missing:
            click.echo(f"missing required: {key}", err=True)
        for e in resolved.errors:
            click.echo(f"invalid: {e}", err=True)

    emit(doc, text)


@runtemplate.command("preview")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--count", type=click.IntRange(1, 1000), default=10, show_default=True,
              help="How many due times.")
@click.option("--from", "start", help="Start from this ISO 8601 time (default: now).")
def preview(rt_id: int, count: int, start: str | None) -> None:
    """The next due times, in the template's zone and in UTC."""
    begin = parse_time(start, "--from") or datetime.now(UTC)
    with state().read() as s:
        rec = svc.recurrence(svc.get_runtemplate(s, rt_id))
    doc = {"id": rt_id, **svc.preview(rec, begin, count)}
    rows = doc["due"]
    emit(doc, lambda: table(
        [(r["local"], r["due"]) for r in rows], ["local time", "utc"]
    ) if rows else click.echo("never scheduled (interval n or inactive)"))


def _run(rt_id: int, env_items: tuple[str, ...], secret_items: tuple[str, ...],
         wait: bool = False) -> None:
    """Run now: through the daemon when it runs (it starts the job at once), else queued
    straight into the database for the daemon's next start. ``wait`` follows the output
    and exits with the job's exit code."""
    overrides, secret = _assignments(env_items, secret_items, "--env")
    client = live.connect("--wait" if wait else None)
    if client is not None:
        with client:
            d = client.call("runtemplate.run", id=rt_id, env=overrides, secret_keys=secret,
                            via="cli")
            if not wait:
                emit(d, f"job {d['id']} of run template {rt_id} started by multiflexid"
                        if d["state"] != "pending" else
                        f"job {d['id']} of run template {rt_id} queued behind its running job")
                return
            if not state().json:
                click.echo(f"job {d['id']} of run template {rt_id}:", err=True)
            final = live.follow(client, d["id"]) if not state().json else \
                _wait_quietly(client, d["id"])
        if state().json:
            emit(final)
        else:
            live.report_end(final)
        raise click.exceptions.Exit(live.exit_status(final))
    st = state()
    with st.session() as s:
        job, _fields = svc.run_now(
            s, st.core.transitions, st.core.box, rt_id, overrides, secret=secret,
            launched_by=live.current_user(), schedule_type="adhoc-cli", now=datetime.now(UTC),
            what="--env ")
        d = job_dict(job)
    emit(d, f"queued job {d['id']} of run template {rt_id} (multiflexid is not running: it "
            "starts the job when it starts)")


def _wait_quietly(client: Any, job_id: int) -> dict[str, Any]:
    """--wait with --format json: no live output, just the final job document."""
    client.call("events.subscribe", job_output=job_id)
    job: dict[str, Any] = client.call("job.get", id=job_id)
    if job["state"] in live.FINAL:
        return job
    for method, params in client.notifications():
        if method == "job.changed" and params["job"]["id"] == job_id \
                and params["job"]["state"] in live.FINAL:
            break
    final: dict[str, Any] = client.call("job.get", id=job_id)
    return final


@runtemplate.command("run")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--env", "env_items", multiple=True, metavar="KEY=VALUE",
              help="One-off override for this job only. Repeatable.")
@_secret_option("One-off override for this job only, kept secret")
@click.option("--wait", is_flag=True,
              help="Follow the job's output until it ends and exit with its exit code "
                   "(124 timed out, 130 cancelled, 1 blocked/lost). Needs the daemon.")
def run(rt_id: int, env_items: tuple[str, ...], secret_items: tuple[str, ...],
        wait: bool) -> None:
    """Run now. With the daemon running the job starts at once; without it the job is
    queued in the database and starts when the daemon does."""
    _run(rt_id, env_items, secret_items, wait)


def register(cli: click.Group) -> None:
    cli.add_command(runtemplate)
