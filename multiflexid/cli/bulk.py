"""``runtemplate clone`` and ``runtemplate bulk ...``: one admin, many companies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click

from multiflexi.states import JOB_STATES
from multiflexid.services import bulk as svc
from multiflexid.services import runtemplates
from multiflexid.services.clone import clone_runtemplate
from multiflexid.services.companies import get_company

from . import live
from .base import AliasGroup, LeafCommand, emit, state
from .runtemplates import _assignments, _secret_option, _view


@click.command("clone", cls=LeafCommand)
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--company", "company_ref",
              help="Company (id or slug) the copy is for (default: the template's own); "
                   "its credentials are re-pointed to that company's of the same type.")
@click.option("--name", help="The copy's name (default: the same in another company, "
                             "'<name> (copy)' in its own).")
def clone(rt_id: int, company_ref: str | None, name: str | None) -> None:
    """Copy a run template, created disabled: settings, configuration (secrets stay
    encrypted), tags, note and its actions."""
    with state().session() as s:
        rt = runtemplates.get_runtemplate(s, rt_id)
        target = get_company(s, company_ref) if company_ref else None
        made = clone_runtemplate(s, rt, datetime.now(UTC), company=target, name=name)
        d = _view(s, made)
    emit(d, f"cloned run template {rt_id} as {d['id']} {d['name']!r} for {d['company']} "
            f"(disabled; enable it with `runtemplate update --id {d['id']} --active`)")


@click.group("bulk", cls=AliasGroup)
def bulk() -> None:
    """One change to many run templates, all or nothing. Select them with --app, --company,
    --tag, --state (of each one's last job) and/or --id (all given must hold); --dry-run
    prints the diff per template and changes nothing."""


def _selection_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--app", "app", help="Templates of this application (id or uuid)."),
        click.option("--company", "company", help="Templates of this company (id or slug)."),
        click.option("--tag", "tag", help="Templates with this tag."),
        click.option("--state", "job_state", type=click.Choice(JOB_STATES),
                     help="Templates whose last job is in this state (e.g. failed)."),
        click.option("--id", "ids", type=int, multiple=True, help="This template. Repeatable."),
        click.option("--dry-run", is_flag=True,
                     help="Print what would change (a diff per template); change nothing."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _do(op: str, sel: dict[str, Any], values: svc.BulkValues) -> None:
    selection = svc.Selection(ids=list(sel["ids"]), app=sel["app"], company=sel["company"],
                              tag=sel["tag"], state=sel["job_state"])
    dry_run = bool(sel["dry_run"])
    client = live.connect() if op == "run" and not dry_run else None
    if client is not None:  # the daemon starts the jobs at once
        with client:
            result = client.call(
                "runtemplate.bulk", op=op, dry_run=False, via="cli",
                selection={"ids": selection.ids, "app": selection.app,
                           "company": selection.company, "tag": selection.tag,
                           "state": selection.state})
    else:
        st = state()
        with st.session() as s:
            rts = svc.select_templates(s, selection)
            result = svc.apply(s, rts, op, values, box=st.core.box, tx=st.core.transitions,
                               now=datetime.now(UTC), launched_by=live.current_user(),
                               schedule_type="adhoc-cli", dry_run=dry_run)
    emit(result, "\n".join(svc.diff_lines(result, op)))


@bulk.command("set-config")
@_selection_options
@_secret_option("A value kept secret")
@click.argument("items", nargs=-1, metavar="KEY=VALUE...")
def set_config(items: tuple[str, ...], secret_items: tuple[str, ...], **sel: Any) -> None:
    """Set configuration overrides (each checked against its template's app)."""
    if not items and not secret_items:
        raise click.UsageError("give KEY=VALUE arguments (--secret KEY=VALUE for a secret)")
    config, secret = _assignments(items, secret_items, "KEY=VALUE")
    _do("set-config", sel, svc.BulkValues(config=config, secret_keys=secret))


@bulk.command("assign-credential")
@_selection_options
@click.option("--credential", "cred_id", type=int, required=True,
              help="Credential id (of the templates' company).")
def assign_credential(cred_id: int, **sel: Any) -> None:
    """Assign a credential (of the templates' own company)."""
    _do("assign-credential", sel, svc.BulkValues(credential=cred_id))


@bulk.command("enable")
@_selection_options
def enable(**sel: Any) -> None:
    """Enable them (scheduled again)."""
    _do("enable", sel, svc.BulkValues())


@bulk.command("disable")
@_selection_options
def disable(**sel: Any) -> None:
    """Disable them (not scheduled; a running job goes on)."""
    _do("disable", sel, svc.BulkValues())


@bulk.command("run")
@_selection_options
def run(**sel: Any) -> None:
    """Run each now (through the daemon when it runs, else queued for its start)."""
    _do("run", sel, svc.BulkValues())


@bulk.command("set-schedule")
@_selection_options
@click.option("--interv", required=True, type=click.Choice(runtemplates.INTERVAL_CODES),
              help="i minutely, h hourly, d daily, w weekly, m monthly, y yearly, c cron, "
                   "n never.")
@click.option("--cron", help="Cron expression (for --interv c), e.g. '30 2 * * *'.")
def set_schedule(interv: str, cron: str | None, **sel: Any) -> None:
    """Set the interval (and cron expression), checked in each template's time zone."""
    _do("set-schedule", sel, svc.BulkValues(interv=interv, cron=cron))


def register(group: click.Group) -> None:
    group.add_command(clone)
    group.add_command(bulk)
