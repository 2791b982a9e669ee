"""``zabbix``: what the Zabbix agent's UserParameters ask (the packaged
``/etc/zabbix/zabbix_agentd.conf.d/multiflexi.conf``): low-level discovery of companies
and run templates, and each template's status. Read from the database, so the items
answer also while the daemon is stopped (the daemon itself: ``check``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import select

from multiflexid.presenters import deadline_text
from multiflexid.services import monitoring
from multiflexid.services.companies import get_company
from multiflexid.services.runtemplates import get_runtemplate
from multiflexid.store.orm import Application, Company, RunTemplate
from multiflexid.zabbix import app_code

from .base import AliasGroup, emit, state, table

FIELDS = ("last_state", "last_status", "last_exitcode", "last_end", "last_success",
          "last_success_age", "tick_state", "late", "missed", "stale", "active",
          "next_schedule")


@click.group(cls=AliasGroup)
def zabbix() -> None:
    """Zabbix agent items: discovery (LLD) and each run template's status."""


def _host(company: Company) -> str:
    settings = state().core.settings
    return company.zabbix_host or settings.zabbix_host or settings.node


@zabbix.command("companies")
def companies() -> None:
    """Discovery of companies: {#COMPANY_ID}, {#COMPANY_CODE}, {#COMPANY_NAME}..."""
    with state().read() as s:
        rows = [{"{#COMPANY_ID}": str(c.id), "{#COMPANY_CODE}": c.slug,
                 "{#COMPANY_NAME}": c.name, "{#COMPANY_ENABLED}": "1" if c.enabled else "0",
                 "{#ZABBIX_HOST}": _host(c)}
                for c in s.scalars(select(Company).order_by(Company.id))]
    _lld(rows)


@zabbix.command("runtemplates")
@click.option("--company", "company_ref", help="Only this company (id or slug).")
def runtemplates(company_ref: str | None) -> None:
    """Discovery of run templates: {#RUNTEMPLATE}, {#RUNTEMPLATE_NAME}, {#COMPANY_CODE},
    {#APPNAME}, {#APPNAME_CODE}, {#INTERVAL}, {#DEADLINE}..."""
    with state().read() as s:
        query = (select(RunTemplate, Company, Application)
                 .join(Company, Company.id == RunTemplate.company_id)
                 .join(Application, Application.id == RunTemplate.app_id)
                 .order_by(RunTemplate.id))
        if company_ref:
            query = query.where(RunTemplate.company_id == get_company(s, company_ref).id)
        rows = [{"{#RUNTEMPLATE}": str(rt.id), "{#RUNTEMPLATE_NAME}": rt.name,
                 "{#COMPANY_ID}": str(c.id), "{#COMPANY_CODE}": c.slug,
                 "{#COMPANY_NAME}": c.name, "{#APPNAME}": a.name,
                 "{#APPNAME_CODE}": app_code(a.name), "{#APP_UUID}": a.uuid or "",
                 "{#INTERVAL}": (rt.cron or "") if rt.interv == "c" else rt.interv,
                 "{#DEADLINE}": deadline_text(rt.deadline_time, rt.deadline_after) or "",
                 "{#ACTIVE}": "1" if rt.active else "0", "{#ZABBIX_HOST}": _host(c)}
                for rt, c, a in s.execute(query)]
    _lld(rows)


def _lld(rows: list[dict[str, str]]) -> None:
    """A JSON array of macro objects (Zabbix 4.2+ LLD), in both formats."""
    emit(rows, lambda: click.echo(json.dumps(rows, ensure_ascii=False)))


@zabbix.command("runtemplate")
@click.option("--id", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--field", type=click.Choice(FIELDS),
              help="Print only this value, bare (for one item per value).")
def runtemplate(rt_id: int, field: str | None) -> None:
    """A run template's status: last state and exit code, last success (Unix time) and
    its age, the current tick against its deadline (late, missed), stale."""
    now = datetime.now(UTC)
    with state().read() as s:
        status: dict[str, Any] = monitoring.template_status(s, get_runtemplate(s, rt_id), now)
    if field is not None:
        click.echo(str(status[field]))
        return
    emit(status, lambda: table([(k, status[k]) for k in status], ["item", "value"]))


def register(cli: click.Group) -> None:
    cli.add_command(zabbix)


