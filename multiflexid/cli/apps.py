"""``application`` commands: import-json, validate-json, export-json, list, show, remove."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from multiflexi.errors import InvalidInput
from multiflexid.domain.appjson import (
    AppJsonError,
    app_from_data,
    export_app,
    load_json,
    split_problem,
)
from multiflexid.presenters import app_dict
from multiflexid.services import apps as svc

from .base import AliasGroup, emit, fields, state, table, write_file


@click.group(cls=AliasGroup)
def application() -> None:
    """Applications: what can run (upstream *.app.json definitions)."""


@application.command("import-json")
@click.option(
    "--file", "files", multiple=True, required=True,
    type=click.Path(path_type=Path, readable=False),  # read (and errors said) by us
    help="An app definition, or a directory of them (*.json). Repeatable.",
)
def import_json(files: tuple[Path, ...]) -> None:
    """Import app definitions, updating an existing app with the same uuid (then name).

    Each file is imported whole or not at all; every problem of a bad file is listed as
    "<json path>: <message>". Exit 1 if any file failed.
    """
    st = state()
    st.core.ensure_schema()
    results = svc.import_files(st.core.db, list(files))
    if not results:
        raise InvalidInput(f"no *.json files found in {', '.join(map(str, files))}")

    def text() -> None:
        for r in results:
            if r.ok:
                verb = "created" if r.created else "updated"
                click.echo(f"{r.file}: {verb} application {r.app_id} {r.name!r} ({r.uuid})")
            else:
                click.echo(f"{r.file}: NOT imported", err=True)
                for e in r.errors:
                    click.echo(f"  {e}", err=True)
            _echo_warnings(r.file, r.warnings)
        bad = sum(not r.ok for r in results)
        if len(results) > 1:
            click.echo(f"{len(results) - bad} imported, {bad} failed", err=bool(bad))

    emit([r.__dict__ for r in results], text)
    if any(not r.ok for r in results):
        raise click.exceptions.Exit(1)


def _echo_warnings(file: str, warnings: list[str]) -> None:
    """One line each on stderr: ``file: <json path>: warning: <message>``."""
    for w in warnings:
        path, message = split_problem(w)
        click.echo(f"{file}: {path}: warning: {message}", err=True)


@application.command("validate-json")
@click.option(
    "--file", "files", multiple=True, required=True,
    type=click.Path(path_type=Path, readable=False),  # read (and errors said) by us
    help="An app definition or a directory of them. Repeatable.",
)
def validate_json(files: tuple[Path, ...]) -> None:
    """Check app definitions without importing: every violation as "<json path>: <message>".

    Exit 1 if any file has a violation.
    """
    report: list[dict[str, Any]] = []
    uuids: list[tuple[str, str | None]] = []
    paths = svc.expand_paths(list(files))
    if not paths:
        raise InvalidInput(f"no *.json files found in {', '.join(map(str, files))}")
    for path in paths:
        errors: list[str] = []
        warnings: list[str] = []
        try:
            data = load_json(path.read_text(encoding="utf-8"), str(path))
            app, warnings = app_from_data(data, str(path))
            uuids.append((str(path), app.uuid))
        except AppJsonError as exc:
            errors = [f"{exc.source}: {p}" if exc.source != str(path) else p
                      for p in exc.problems]
            warnings = exc.warnings
        except OSError as exc:
            errors = [exc.strerror or str(exc)]
        except UnicodeDecodeError as exc:
            errors = [f"not UTF-8 text (byte {exc.start})"]
        report.append({"file": str(path), "valid": not errors, "errors": errors,
                       "warnings": warnings})
    # As import-json refuses them: files of one run that share a uuid.
    shared = svc.shared_uuids(uuids)
    for r in report:
        if r["file"] in shared:
            r["errors"].append(shared[r["file"]])
            r["valid"] = False

    def text() -> None:
        many = len(report) > 1
        for r in report:
            prefix = f"{r['file']}: " if many else ""
            for e in r["errors"]:
                click.echo(f"{prefix}{e}")
            _echo_warnings(r["file"], r["warnings"])
            if not r["errors"]:
                click.echo(f"{r['file']}: valid", err=not many)

    emit(report if len(report) != 1 else report[0], text)
    if any(not r["valid"] for r in report):
        raise click.exceptions.Exit(1)


def _ref(app_id: int | None, uuid: str | None) -> str:
    if (app_id is None) == (uuid is None):
        raise click.UsageError("give exactly one of --id or --uuid")
    return str(app_id) if app_id is not None else str(uuid)


@application.command("export-json")
@click.option("--id", "app_id", type=int, help="Application id.")
@click.option("--uuid", help="Application uuid.")
@click.option("--file", "out", type=click.Path(path_type=Path, dir_okay=True),
              help="Write here (a directory gets upstream's file name); stdout without it.")
def export_json(app_id: int | None, uuid: str | None, out: Path | None) -> None:
    """Export an application in upstream's JSON format (it imports back the same)."""
    with state().read() as s:
        definition = svc.to_definition(svc.get_app(s, _ref(app_id, uuid), parts=True))
    doc = export_app(definition)
    text = json.dumps(doc, indent=4, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
        return
    if out.is_dir():
        from multiflexid.domain.appjson import export_filename

        out = out / export_filename(definition)
    write_file(out, text.encode("utf-8"))
    emit({"file": str(out)}, f"written {out}")


@application.command("list")
def list_() -> None:
    """List applications."""
    with state().read() as s:
        rows = [app_dict(a) for a in svc.list_apps(s)]
    emit(rows, lambda: table(
        [(r["id"], r["name"], r["version"], r["uuid"], r["executable"], r["enabled"])
         for r in rows],
        ["id", "name", "version", "uuid", "executable", "enabled"],
    ))


@application.command("show")
@click.option("--id", "app_id", type=int, help="Application id.")
@click.option("--uuid", help="Application uuid.")
def show(app_id: int | None, uuid: str | None) -> None:
    """Show an application with its environment fields, artifacts and exit codes."""
    with state().read() as s:
        d = app_dict(svc.get_app(s, _ref(app_id, uuid), parts=True), parts=True)

    def text() -> None:
        fields([
            ("id", d["id"]), ("uuid", d["uuid"]), ("name", d["name"]),
            ("description", d["description"]), ("executable", d["executable"]),
            ("cmdparams", d["cmdparams"]), ("ociimage", d["ociimage"]),
            ("version", d["version"]), ("homepage", d["homepage"]),
            ("requirements", d["requirements"]), ("tags", d["tags"]),
            ("enabled", d["enabled"]),
        ])
        click.echo("\nenvironment:")
        table(
            [(f["key"], f["type"], f["required"], f["secret"],
              None if f["secret"] else f["default"], f["description"])
             for f in d["environment"]],
            ["key", "type", "required", "secret", "default", "description"], whole=True,
        )
        if d["artifacts"]:
            click.echo("\nartifacts:")
            table([(a["name"], a["type"], a["path"], a["description"]) for a in d["artifacts"]],
                  ["name", "type", "path (regex)", "description"], whole=True)
        if d["exit_codes"]:
            click.echo("\nexit codes:")
            table([(e["code"], e["severity"], e["retry"], _meaning(e))
                   for e in d["exit_codes"]], ["code", "severity", "retry", "description"],
                  whole=True)

    emit(d, text)


def _meaning(e: dict[str, Any]) -> str:
    if e["code"] <= 255:
        return str(e["description"])
    return (f"{e['description']} (never a process exit status: it ends as "
            f"{e['code'] % 256})")


@application.command("update")
@click.option("--id", "app_id", type=int, required=True, help="Application id.")
@click.option("--enable/--disable", "enabled", default=None, help="Allow or stop its use.")
def update(app_id: int, enabled: bool | None) -> None:
    """Enable or disable an application (disabled apps' templates do not run)."""
    with state().session() as s:
        app = svc.get_app(s, app_id)
        if enabled is not None:
            app.enabled = enabled
        d = app_dict(app)
    emit(d, f"application {d['id']} {d['name']!r}: {'enabled' if d['enabled'] else 'disabled'}")


@application.command("remove")
@click.option("--id", "app_id", type=int, required=True, help="Application id.")
def remove(app_id: int) -> None:
    """Remove an application that no run template or job uses."""
    with state().session() as s:
        app = svc.remove_app(s, app_id)
        d = {"id": app.id, "name": app.name, "removed": True}
    emit(d, f"removed application {d['id']} {d['name']!r}")


def register(cli: click.Group) -> None:
    cli.add_command(application)
