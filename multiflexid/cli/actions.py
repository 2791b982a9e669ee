"""``runtemplate action``, ``company action`` and ``action-run`` commands."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from multiflexi.states import (
    ACTION_RUN_STATES,
    ACTION_STREAK_TRIGGERS,
    ACTION_THROTTLES,
    ACTION_TRIGGERS,
)
from multiflexid.actions import spec
from multiflexid.actions.trial import try_action
from multiflexid.services import actions as svc
from multiflexid.services.companies import get_company
from multiflexid.services.runtemplates import get_runtemplate

from . import live
from .base import AliasGroup, emit, state, table

MODULE_HELP = "Module: " + ", ".join(spec.MODULES) + "."
SET_HELP = ("A key of the module, KEY=VALUE; repeat a repeatable key (header, url). "
            "Secret keys are encrypted at rest and masked. `action modules` lists the keys.")


def _add_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--on", "trigger", required=True, type=click.Choice(ACTION_TRIGGERS),
                     help="A job's end: success, failure (failed, timed_out, lost), any, or "
                          "recovery (the first success after failures). A tick of a "
                          "template with a deadline: missed (not done by the deadline) or "
                          "late (done after it)."),
        click.option("--throttle", type=click.Choice(ACTION_THROTTLES),
                     help="failure/recovery/missed: only the first of a streak (default) "
                          "or every time."),
        click.option("--module", required=True, help=MODULE_HELP),
        click.option("--set", "items", multiple=True, metavar="KEY=VALUE", help=SET_HELP),
        click.option("--note", help="A note shown with the action."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _text_of(d: dict[str, Any]) -> str:
    keys = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in d["config"].items())
    throttle = f" ({d['throttle']})" if d["trigger"] in ACTION_STREAK_TRIGGERS else ""
    return f"{d['module']} on {d['trigger']}{throttle}" + (f": {keys}" if keys else "")


def _list(rows: list[dict[str, Any]]) -> None:
    table([(r["id"], r["scope"], r["trigger"], r["throttle"], r["module"],
            " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                     for k, v in r["config"].items()), r["enabled"]) for r in rows],
          ["id", "from", "on", "throttle", "module", "config", "enabled"])


def _add(target: Callable[[Session], dict[str, Any]], where: str, *,
         items: tuple[str, ...], **options: Any) -> None:
    """Add an action to what ``target`` finds (a template, or a company's defaults)."""
    st = state()
    with st.session() as s:
        action = svc.add_action(s, st.core.box, values=svc.parse_settings(items),
                                **options, **target(s))
        d = svc.action_view(action, st.core.box)

    def text() -> None:
        click.echo(d["id"])
        click.echo(f"added action {d['id']} to {where}: {_text_of(d)}", err=True)

    emit(d, text)


def _test(action_id: int) -> None:
    st = state()
    core = st.core
    core.ensure_schema()

    async def read(fn: Callable[[Session], Any]) -> Any:
        with core.db.read_session() as s:
            return fn(s)

    async def write(fn: Callable[[Session], Any]) -> Any:
        with core.db.session() as s:
            return fn(s)

    outcome = asyncio.run(try_action(action_id, read=read, write=write,
                                     tx=core.transitions, box=core.box))
    if st.json:
        emit(outcome)
    else:
        word = "ok" if outcome["ok"] else "FAILED"
        what = "tested" if outcome["performed"] else "checked (not performed: it changes state)"
        click.echo(f"action {action_id} ({outcome['module']}) {what} with a sample job: "
                   f"{word}: {outcome['result']}")
    if not outcome["ok"]:
        if not st.json:
            hint = " (temporary: it would be retried)" if outcome["temporary"] else ""
            click.echo(f"multiflexi-cli: error: action {action_id} failed{hint}", err=True)
        raise click.exceptions.Exit(1)


# --- runtemplate action ----------------------------------------------------------------------


@click.group("action", cls=AliasGroup)
def rt_action() -> None:
    """What happens when a job of the template ends, or a tick misses its deadline
    (webhooks, notifications, chains)."""


@rt_action.command("add")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@_add_options
def rt_add(rt_id: int, trigger: str, throttle: str | None, module: str,
           items: tuple[str, ...], note: str | None) -> None:
    """Add an action; prints its id."""
    _add(lambda s: {"runtemplate": get_runtemplate(s, rt_id)}, f"run template {rt_id}",
         module=module, trigger=trigger, throttle=throttle, items=items, note=note)


@rt_action.command("list")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
def rt_list(rt_id: int) -> None:
    """The template's actions, then its company's defaults (unless it opted out)."""
    st = state()
    with st.read() as s:
        rt = get_runtemplate(s, rt_id)
        rows = [svc.action_view(a, st.core.box) for a in svc.actions_of(s, runtemplate=rt)]
        inherits = rt.inherit_actions

    def text() -> None:
        _list(rows)
        if not inherits:
            click.echo("(the company's default actions do not apply to it: "
                       "runtemplate update --no-company-actions)")

    emit(rows, text)


@rt_action.command("remove")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--action", "action_id", type=int, required=True, help="Action id.")
def rt_remove(rt_id: int, action_id: int) -> None:
    """Remove an action (its past runs stay in the ledger)."""
    with state().session() as s:
        rt = get_runtemplate(s, rt_id)
        svc.remove_action(s, svc.get_action(s, action_id, runtemplate=rt))
    emit({"id": action_id, "removed": True},
         f"removed action {action_id} of run template {rt_id}")


@rt_action.command("test")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--action", "action_id", type=int, required=True, help="Action id.")
def rt_test(rt_id: int, action_id: int) -> None:
    """Perform the action once with a sample job and print the result."""
    with state().read() as s:
        svc.get_action(s, action_id, runtemplate=get_runtemplate(s, rt_id))
    _test(action_id)


# --- company action --------------------------------------------------------------------------


@click.group("action", cls=AliasGroup)
def company_action() -> None:
    """Default actions of a company: for all its templates, unless a template opts out."""


@company_action.command("add")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@_add_options
def co_add(company_ref: str, trigger: str, throttle: str | None, module: str,
           items: tuple[str, ...], note: str | None) -> None:
    """Add a default action; prints its id."""
    _add(lambda s: {"company": get_company(s, company_ref)}, f"company {company_ref}",
         module=module, trigger=trigger, throttle=throttle, items=items, note=note)


@company_action.command("list")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
def co_list(company_ref: str) -> None:
    """The company's default actions."""
    st = state()
    with st.read() as s:
        company = get_company(s, company_ref)
        rows = [svc.action_view(a, st.core.box) for a in svc.actions_of(s, company=company)]
    emit(rows, lambda: _list(rows))


@company_action.command("remove")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--action", "action_id", type=int, required=True, help="Action id.")
def co_remove(company_ref: str, action_id: int) -> None:
    """Remove a default action (its past runs stay in the ledger)."""
    with state().session() as s:
        company = get_company(s, company_ref)
        svc.remove_action(s, svc.get_action(s, action_id, company=company))
    emit({"id": action_id, "removed": True}, f"removed action {action_id} of {company_ref}")


@company_action.command("test")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--action", "action_id", type=int, required=True, help="Action id.")
def co_test(company_ref: str, action_id: int) -> None:
    """Perform the action once with a sample job and print the result."""
    with state().read() as s:
        svc.get_action(s, action_id, company=get_company(s, company_ref))
    _test(action_id)


# --- action-run ----------------------------------------------------------------------------


@click.group("action-run", cls=AliasGroup)
def action_run() -> None:
    """The delivery ledger: every action a job's end (or a tick's missed or late deadline)
    called for, and how it went."""


def run_for(r: dict[str, Any]) -> str:
    """What a run is for: ``job 42`` or ``tick 7``."""
    return f"job {r['job_id']}" if r["job_id"] is not None else f"tick {r['tick_id']}"


def run_rows(rows: list[dict[str, Any]]) -> None:
    table([(r["id"], run_for(r), r["action_id"], r["module"], r["trigger"], r["state"],
            f"{r['attempts']}/{r['max_attempts']}", r["status_code"], r["result"],
            r["finished_at"] or r["next_at"]) for r in rows],
          ["id", "for", "action", "module", "on", "state", "tries", "code", "result",
           "done/next"])


@action_run.command("list")
@click.option("--job", "job_id", type=int, help="Only this job's runs.")
@click.option("--state", "run_state", type=click.Choice(ACTION_RUN_STATES),
              help="Only runs in this state (failed, gave_up: what needs a look).")
@click.option("--company", "company_ref", help="Company id or slug.")
@click.option("--runtemplate", "rt_id", type=int, help="Run template id.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
def run_list(job_id: int | None, run_state: str | None, company_ref: str | None,
             rt_id: int | None, limit: int) -> None:
    """Action runs, newest first."""
    with state().read() as s:
        company = get_company(s, company_ref) if company_ref else None
        rows = [svc.run_view(r) for r in svc.list_runs(
            s, job_id=job_id, state=run_state, runtemplate_id=rt_id,
            company_id=company.id if company else None, limit=limit)]
    emit(rows, lambda: run_rows(rows))


@action_run.command("retry")
@click.option("--id", "run_id", type=int, required=True, help="Action run id.")
def run_retry(run_id: int) -> None:
    """Deliver a failed or given-up run again (the daemon performs it within a second)."""
    with state().session() as s:
        d = svc.run_view(svc.retry_run(s, svc.get_run(s, run_id), datetime.now(UTC),
                                        live.current_user()))
    emit(d, f"action run {run_id} ({d['module']} for {run_for(d)}) is due again")


@click.group("action", cls=AliasGroup)
def action() -> None:
    """Action modules."""


@action.command("modules")
def modules() -> None:
    """The modules and their keys (required *, secret ●)."""
    rows = svc.modules_view()

    def text() -> None:
        for m in rows:
            click.echo(f"{m['name']}: {m['description']}")
            for k in m["keys"]:
                flags = ("*" if k["required"] else " ") + ("●" if k["secret"] else " ")
                default = f" [default {k['default']}]" if k["default"] is not None else ""
                click.echo(f"  {flags} {k['name']:<12} {k['description']}{default}")

    emit(rows, text)


def register(cli: click.Group) -> None:
    from .companies import company
    from .runtemplates import runtemplate

    runtemplate.add_command(rt_action)
    company.add_command(company_action)
    cli.add_command(action_run)
    cli.add_command(action)

