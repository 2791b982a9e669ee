"""``credential-type`` and ``credential`` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput
from multiflexid.domain.appjson import AppJsonError
from multiflexid.domain.credjson import parse_credential_type
from multiflexid.presenters import credential_type_dict
from multiflexid.services import credentials as svc
from multiflexid.services.apps import expand_paths
from multiflexid.services.clone import clone_credential
from multiflexid.services.companies import get_company
from multiflexid.services.jobs import parse_assignments
from multiflexid.store.orm import Credential, CredentialType

from .base import AliasGroup, emit, fields, state, table


@click.group("credential-type", cls=AliasGroup)
def credential_type() -> None:
    """Credential types: which fields a kind of credential has (AbraFlexi, Office365...)."""


@credential_type.command("import-json")
@click.option("--file", "files", multiple=True, required=True,
              type=click.Path(path_type=Path, readable=False),  # read (and errors said) by us
              help="A credential-type JSON file or a directory of them. Repeatable.")
def ct_import(files: tuple[Path, ...]) -> None:
    """Import credential types (upsert by code). Each file whole or not at all."""
    st = state()
    st.core.ensure_schema()
    results: list[dict[str, Any]] = []
    for path in expand_paths(list(files)):
        res: dict[str, Any] = {"file": str(path), "ok": False, "errors": []}
        results.append(res)
        try:
            d = parse_credential_type(path.read_text(encoding="utf-8"), str(path))
        except AppJsonError as exc:
            res["errors"] = [f"{exc.source}: {p}" if exc.source != str(path) else p
                             for p in exc.problems]
            continue
        except OSError as exc:
            res["errors"] = [exc.strerror or str(exc)]
            continue
        except UnicodeDecodeError as exc:
            res["errors"] = [f"not UTF-8 text (byte {exc.start})"]
            continue
        with st.core.db.session() as s:  # each file whole or not at all
            ctype, created = svc.upsert_credential_type(s, d)
            res.update(ok=True, code=ctype.code, id=ctype.id, created=created)

    def text() -> None:
        for r in results:
            if r["ok"]:
                verb = "created" if r["created"] else "updated"
                click.echo(f"{r['file']}: {verb} credential type {r['code']!r}")
            else:
                click.echo(f"{r['file']}: NOT imported", err=True)
                for e in r["errors"]:
                    click.echo(f"  {e}", err=True)

    if not results:  # before any output: json mode prints one document only
        raise InvalidInput(f"no *.json files found in {', '.join(map(str, files))}")
    emit(results, text)
    if any(not r["ok"] for r in results):
        raise click.exceptions.Exit(1)


@credential_type.command("list")
def ct_list() -> None:
    """List credential types."""
    with state().read() as s:
        rows = [credential_type_dict(t) for t in svc.list_credential_types(s)]
    emit(rows, lambda: table(
        [(r["id"], r["code"], r["name"], ", ".join(f["keyword"] for f in r["fields"]))
         for r in rows],
        ["id", "code", "name", "fields"],
    ))


@credential_type.command("show")
@click.option("--code", required=True, help="Credential type code, e.g. AbraFlexi.")
def ct_show(code: str) -> None:
    """Show a credential type and its fields."""
    with state().read() as s:
        d = credential_type_dict(svc.get_credential_type(s, code))

    def text() -> None:
        fields([(k, d[k]) for k in ("id", "code", "name", "description", "version", "uuid")])
        click.echo("\nfields:")
        table([(f["keyword"], f["type"], f["required"], f["secret"], f["name"])
               for f in d["fields"]], ["keyword", "type", "required", "secret", "name"])

    emit(d, text)


# --- credentials ------------------------------------------------------------------------------


@click.group(cls=AliasGroup)
def credential() -> None:
    """Credentials: a company's named values (URL, user, password...) for its run templates."""


def _view(s: Session, cred: Credential, reveal: bool) -> dict[str, Any]:
    return svc.credential_view(s, cred, state().core.box, reveal)


def _show(d: dict[str, Any]) -> None:
    fields([(k, d[k]) for k in ("id", "name", "company", "type")])
    click.echo("\nvalues:")
    table(sorted(d["values"].items()), ["key", "value"])


@credential.command("create")
@click.option("--company", "company_ref", required=True, help="Company id or slug.")
@click.option("--type", "type_code", required=True, help="Credential type code.")
@click.option("--name", required=True, help="A name unique within the company.")
@click.option("--field", "field_items", multiple=True, metavar="KEY=VALUE",
              help="A value of the credential. Repeatable.")
def create(company_ref: str, type_code: str, name: str, field_items: tuple[str, ...]) -> None:
    """Create a credential of a company. Secret fields are encrypted at rest."""
    values = parse_assignments(field_items, "--field")
    st = state()
    with st.session() as s:
        company = get_company(s, company_ref)
        ctype = svc.get_credential_type(s, type_code)
        cred = svc.create_credential(s, company, ctype, name, values, st.core.box)
        d = _view(s, cred, reveal=False)
    emit(d, f"created credential {d['id']} {d['name']!r} ({d['type']}) for {d['company']}")


@credential.command("list")
@click.option("--company", "company_ref", help="Only this company (id or slug).")
def list_(company_ref: str | None) -> None:
    """List credentials (secret values masked)."""
    with state().read() as s:
        company = get_company(s, company_ref) if company_ref else None
        rows = [_view(s, c, reveal=False) for c in svc.list_credentials(s, company)]
    emit(rows, lambda: table(
        [(r["id"], r["company"], r["type"], r["name"], ", ".join(sorted(r["values"])))
         for r in rows],
        ["id", "company", "type", "name", "keys"],
    ))


@credential.command("show")
@click.option("--id", "cred_id", type=int, required=True, help="Credential id.")
@click.option("--reveal", is_flag=True, help="Show secret values in clear.")
def show(cred_id: int, reveal: bool) -> None:
    """Show a credential; secrets masked unless --reveal."""
    with state().read() as s:
        d = _view(s, svc.get_credential(s, cred_id), reveal)
    emit(d, lambda: _show(d))


@credential.command("update")
@click.option("--id", "cred_id", type=int, required=True, help="Credential id.")
@click.option("--field", "field_items", multiple=True, required=True, metavar="KEY=VALUE",
              help="A value to set. Repeatable.")
def update(cred_id: int, field_items: tuple[str, ...]) -> None:
    """Change values of a credential."""
    values = parse_assignments(field_items, "--field")
    st = state()
    with st.session() as s:
        cred = svc.get_credential(s, cred_id)
        ctype = s.get(CredentialType, cred.credential_type_id)
        assert ctype is not None
        svc.set_values(cred, svc.get_credential_type(s, ctype.code), values, st.core.box)
        s.flush()
        d = _view(s, cred, reveal=False)
    emit(d, lambda: _show(d))


@credential.command("clone")
@click.option("--id", "cred_id", type=int, required=True, help="Credential id.")
@click.option("--company", "company_ref",
              help="Company (id or slug) the copy is for (default: the credential's own).")
@click.option("--name", help="The copy's name (default: the same in another company, "
                             "'<name> (copy)' in its own).")
def clone(cred_id: int, company_ref: str | None, name: str | None) -> None:
    """Copy a credential, its secret values copied encrypted (never shown)."""
    with state().session() as s:
        target = get_company(s, company_ref) if company_ref else None
        made = clone_credential(s, svc.get_credential(s, cred_id), company=target, name=name)
        d = _view(s, made, reveal=False)
    emit(d, f"cloned credential {cred_id} as {d['id']} {d['name']!r} for {d['company']}")


@credential.command("remove")
@click.option("--id", "cred_id", type=int, required=True, help="Credential id.")
def remove(cred_id: int) -> None:
    """Remove a credential that no run template uses."""
    with state().session() as s:
        cred = svc.get_credential(s, cred_id)
        d = {"id": cred.id, "name": cred.name, "removed": True}
        svc.remove_credential(s, cred)
    emit(d, f"removed credential {d['id']} {d['name']!r}")


def register(cli: click.Group) -> None:
    cli.add_command(credential_type)
    cli.add_command(credential)
