"""``access`` (who may do what for which company) and ``audit`` (who did) commands, and
``company export`` (everything stored about a company)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from multiflexi.access import MAY, ROLES
from multiflexi.errors import MultiFlexiError
from multiflexid.services import access as svc
from multiflexid.services import audit
from multiflexid.services.companies import get_company

from .base import AliasGroup, cli_actor, emit, parse_time, state, table


@click.group(cls=AliasGroup)
def access() -> None:
    """Roles of Unix groups per company: viewer, operator, admin.

    Root, user multiflexi and members of group multiflexi are admins of every company.
    Grants made here add to the [[access]] tables of multiflexi.conf."""


_ROLE_HELP = "; ".join(f"{r}: {MAY[r]}" for r in ROLES)


@access.command("grant")
@click.option("--group", required=True, help="Unix group whose members get the role.")
@click.option("--role", type=click.Choice(ROLES), required=True, help=_ROLE_HELP + ".")
@click.option("--company", "company_ref", help="Only this company (id or slug); "
                                               "default: every company.")
def grant(group: str, role: str, company_ref: str | None) -> None:
    """Give a group a role (replacing its earlier role there)."""
    with state().session() as s:
        company = get_company(s, company_ref) if company_ref else None
        g = svc.grant(s, group, role, company, datetime.now(UTC), cli_actor().user)
        where = f"company {company.slug}" if company else "every company"
        d = {"group": g.group_name, "role": g.role, "company_id": g.company_id}
    emit(d, f"group {group} is {role} of {where} (members log in again to get it)")


@access.command("revoke")
@click.option("--group", required=True, help="Unix group.")
@click.option("--company", "company_ref", help="The company (id or slug) of the grant; "
                                               "default: the grant on every company.")
def revoke(group: str, company_ref: str | None) -> None:
    """Take a group's role away (a grant made with `access grant`)."""
    with state().session() as s:
        company = get_company(s, company_ref) if company_ref else None
        g = svc.revoke(s, group, company)
        d = {"group": g.group_name, "role": g.role, "company_id": g.company_id,
             "revoked": True}
    emit(d, f"group {group} is no longer {d['role']} of "
            + (f"company {company_ref}" if company_ref else "every company"))


@access.command("list")
def list_() -> None:
    """Every grant, from the database and from multiflexi.conf."""
    st = state()
    with st.read() as s:
        rows = svc.all_grants(s, st.core.settings.access)
    emit(rows, lambda: table(
        [(r["group"], r["role"], r["company"] or "(every company)", r["source"])
         for r in rows], ["group", "role", "company", "from"]) if rows else click.echo(
        "no grants: only root, user multiflexi and group multiflexi may use multiflexid"))


@click.group(cls=AliasGroup)
def audit_group() -> None:
    """The audit trail: every change made through the socket or this CLI."""


@audit_group.command("list")
@click.option("--company", "company_ref", help="Only changes of this company (id or slug).")
@click.option("--since", help="Only changes since this ISO 8601 time (UTC if no zone).")
@click.option("--user", help="Only changes by this user (or made under sudo by them).")
@click.option("--entity", type=click.Choice(audit.ENTITIES), help="Only this kind of thing.")
@click.option("--id", "entity_id", type=int, help="Only this one (with --entity).")
@click.option("--limit", type=click.IntRange(1, 10000), default=200, show_default=True)
def audit_list(company_ref: str | None, since: str | None, user: str | None,
               entity: str | None, entity_id: int | None, limit: int) -> None:
    """Changes, newest first, with who made them, when, from where and the field diff
    (secret values only as "changed")."""
    with state().read() as s:
        company_id = get_company(s, company_ref).id if company_ref else None
        rows = [audit.entry_dict(e) for e in audit.list_entries(
            s, company_id=company_id, since=parse_time(since, "--since"), user=user, entity=entity,
            entity_id=entity_id, limit=limit)]

    def text() -> None:
        for r in rows:
            who = r["user"] + (f" (as {r['login_user']})" if r["login_user"] else "")
            click.echo(f"{r['at']}  {who} via {r['via']}: {r['summary']}")
            diff = r["diff"]
            for name in sorted(diff):
                change = diff[name]
                shown = (f"{change[0]!r} -> {change[1]!r}" if isinstance(change, list)
                         else str(change))
                click.echo(f"    {name}: {shown}")
        if not rows:
            click.echo("no changes recorded")

    emit(rows, text)


def export(company_ref: str, file: str) -> None:
    """`company export`: everything stored about a company as one JSON file."""
    st = state()
    out = Path(file)
    tmp = out.with_name(out.name + ".tmp")
    with st.read() as s:
        company = get_company(s, company_ref)
        try:
            with tmp.open("w", encoding="utf-8") as fh:
                counts = audit.export_company(s, company, st.core.box, fh, datetime.now(UTC))
            tmp.replace(out)
        except OSError as exc:
            raise MultiFlexiError(f"{out}: cannot write: {exc.strerror or exc}") from None
    emit({"company": company.slug, "file": str(out), **counts},
         f"wrote {out}: company {company.slug}, " + ", ".join(
             f"{n} {what}" for what, n in counts.items()) + " (secrets redacted)")


def register(cli: click.Group) -> None:
    cli.add_command(access)
    cli.add_command(audit_group, "audit")
