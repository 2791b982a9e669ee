"""``company`` commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from multiflexid.presenters import company_dict
from multiflexid.services import companies as svc
from multiflexid.services import company_env as env_svc
from multiflexid.services.jobs import parse_assignments

from .base import AliasGroup, emit, fields, state, table


@click.group(cls=AliasGroup)
def company() -> None:
    """Companies (tenants): whom the work is for."""


def _ref(company_id: int | None, slug: str | None) -> str:
    if (company_id is None) == (slug is None):
        raise click.UsageError("give exactly one of --id or --slug")
    return str(company_id) if company_id is not None else str(slug)


def _zabbix_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--zabbix-server", metavar="HOST[:PORT]",
                      help="Zabbix server or proxy this company's job ends go to (instead "
                           "of the zabbix_server setting; '' to clear).")(fn)
    return click.option("--zabbix-host", metavar="NAME",
                        help="Zabbix host its job ends are reported under (as the "
                             "original's zabbix_host; default: the zabbix_host setting, "
                             "else the node; '' to clear).")(fn)


def _show(d: dict[str, Any]) -> None:
    # The Zabbix settings only when set: most companies have none.
    fields([(k, d[k]) for k in ("id", "name", "slug", "ic", "dic", "email", "enabled")]
           + [(k, d[k]) for k in ("zabbix_host", "zabbix_server") if d.get(k)])


@company.command("create")
@click.option("--name", required=True, help="Company name.")
@click.option("--slug", required=True, help="Unique code used in logs and commands.")
@click.option("--ic", help="Company registration number (IČ).")
@click.option("--dic", help="VAT number (DIČ).")
@click.option("--email", help="Contact e-mail.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@_zabbix_options
def create(name: str, slug: str, ic: str | None, dic: str | None, email: str | None,
           disabled: bool, zabbix_host: str | None, zabbix_server: str | None) -> None:
    """Create a company."""
    with state().session() as s:
        d = company_dict(svc.create_company(
            s, name=name, slug=slug, ic=ic, dic=dic, email=email, enabled=not disabled,
            zabbix_host=zabbix_host, zabbix_server=zabbix_server,
        ))
    emit(d, f"created company {d['id']} {d['slug']!r}")


@company.command("list")
def list_() -> None:
    """List companies."""
    with state().read() as s:
        rows = [company_dict(c) for c in svc.list_companies(s)]
    emit(rows, lambda: table(
        [(r["id"], r["slug"], r["name"], r["ic"], r["email"], r["enabled"]) for r in rows],
        ["id", "slug", "name", "ic", "email", "enabled"],
    ))


@company.command("show")
@click.option("--id", "company_id", type=int, help="Company id.")
@click.option("--slug", help="Company slug.")
def show(company_id: int | None, slug: str | None) -> None:
    """Show a company."""
    with state().read() as s:
        d = company_dict(svc.get_company(s, _ref(company_id, slug)))
    emit(d, lambda: _show(d))


@company.command("update")
@click.option("--id", "company_id", type=int, help="Company id.")
@click.option("--slug", help="Company slug (to select it).")
@click.option("--name", help="New name.")
@click.option("--new-slug", help="New slug.")
@click.option("--ic", help="New IČ.")
@click.option("--dic", help="New DIČ.")
@click.option("--email", help="New e-mail ('' to clear).")
@click.option("--enabled/--disabled", default=None, help="Enable or disable.")
@_zabbix_options
def update(company_id: int | None, slug: str | None, name: str | None, new_slug: str | None,
           ic: str | None, dic: str | None, email: str | None, enabled: bool | None,
           zabbix_host: str | None, zabbix_server: str | None) -> None:
    """Change a company."""
    with state().session() as s:
        c = svc.get_company(s, _ref(company_id, slug))
        d = company_dict(svc.update_company(
            s, c, name=name, slug=new_slug, ic=ic, dic=dic, email=email, enabled=enabled,
            zabbix_host=zabbix_host, zabbix_server=zabbix_server,
        ))
    emit(d, lambda: _show(d))


@company.command("remove")
@click.option("--id", "company_id", type=int, help="Company id.")
@click.option("--slug", help="Company slug.")
def remove(company_id: int | None, slug: str | None) -> None:
    """Remove a company that has no run templates, credentials or jobs."""
    with state().session() as s:
        c = svc.get_company(s, _ref(company_id, slug))
        d = {"id": c.id, "slug": c.slug, "removed": True}
        svc.remove_company(s, c)
    emit(d, f"removed company {d['id']} {d['slug']!r}")


@company.command("export")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--file", required=True, type=click.Path(dir_okay=False),
              help="Where to write the JSON document.")
def export(company_ref: str, file: str) -> None:
    """Everything stored about a company as one JSON file (secrets redacted): the company,
    its credentials, templates, actions, jobs with output and artifact list, its audit
    trail — what a client asks for under data-protection law."""
    from .access import export as do_export

    do_export(company_ref, file)


# --- a company's environment ----------------------------------------------------------------


@company.group("env", cls=AliasGroup)
def env() -> None:
    """Variables every job of a company gets (after the application's defaults, before
    credentials; `runtemplate env --explain` shows them as "company environment")."""


def _env_table(rows: list[dict[str, Any]]) -> None:
    table([(r["key"], r["value"], r["secret"]) for r in rows], ["key", "value", "secret"])


@env.command("set")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--secret", is_flag=True,
              help="Keep the values secret (encrypted at rest, masked everywhere). Keys named "
                   "like secrets (*PASSWORD*, *TOKEN*, *SECRET*, *APIKEY*, *_KEY) and fields "
                   "an application declares secret are kept secret anyway.")
@click.argument("items", nargs=-1, required=True, metavar="KEY=VALUE...")
def env_set(company_ref: str, secret: bool, items: tuple[str, ...]) -> None:
    """Set variables of the company's environment."""
    values = parse_assignments(items, "KEY=VALUE")
    st = state()
    with st.session() as s:
        c = svc.get_company(s, company_ref)
        for key, value in values.items():
            env_svc.set_env(s, c, key, value, st.core.box, secret=secret)
        rows = env_svc.env_view(env_svc.env_rows(s, c.id), st.core.box)
        slug = c.slug
    emit(rows, f"company {slug}: set {', '.join(values)}")


@env.command("unset")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
def env_unset(company_ref: str, keys: tuple[str, ...]) -> None:
    """Remove variables from the company's environment."""
    st = state()
    with st.session() as s:
        c = svc.get_company(s, company_ref)
        for key in keys:
            env_svc.unset_env(s, c, key)
        rows = env_svc.env_view(env_svc.env_rows(s, c.id), st.core.box)
        slug = c.slug
    emit(rows, f"company {slug}: unset {', '.join(keys)}")


@env.command("list")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--reveal", is_flag=True, help="Show secret values in clear.")
def env_list(company_ref: str, reveal: bool) -> None:
    """The company's environment (secret values masked unless --reveal)."""
    st = state()
    with st.read() as s:
        c = svc.get_company(s, company_ref)
        rows = env_svc.env_view(env_svc.env_rows(s, c.id), st.core.box, reveal=reveal)
    emit(rows, lambda: _env_table(rows))


def register(cli: click.Group) -> None:
    cli.add_command(company)
