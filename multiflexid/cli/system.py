"""``status`` and ``db`` commands."""

from __future__ import annotations

from typing import Any

import click
from alembic.util.exc import CommandError
from sqlalchemy import func, select

import multiflexi
from multiflexi.client import Client
from multiflexi.errors import MultiFlexiError, StorageError
from multiflexid.executors.engines import engine_status
from multiflexid.services.jobs import counts_by_state
from multiflexid.store.orm import Application, Company, Credential, RunTemplate
from multiflexid.store.search import OutputSearch

from .base import AliasGroup, LeafCommand, emit, fields, state


def daemon_status(path: str) -> dict[str, Any]:
    """Whether the daemon answers on its socket, and what it says about itself."""
    try:
        with Client(path, timeout=5) as client:
            info = client.call("daemon.status")
    except MultiFlexiError as exc:
        return {"reachable": False, "socket": path, "problem": exc.message}
    return {"reachable": True, "socket": path, **info}


def search_text(search: dict[str, Any]) -> str:
    """How output is searched, in one line."""
    if search.get("warning"):
        return f"NOT INDEXED: {search['warning']}"
    if search.get("behind"):
        return (f"{search['index']} index, {search['behind']} output chunk(s) not indexed "
                "yet (the daemon indexes them in the background; searches scan them)")
    return f"{search['index']} index, all output indexed"


@click.command("status", cls=LeafCommand)
def status() -> None:
    """Versions, database, daemon and container engines reachability, counts."""
    st = state()
    core = st.core
    doc: dict[str, Any] = {
        "version": multiflexi.__version__,
        "config": str(core.settings.config_path) if core.settings.config_path else None,
        "data_dir": str(core.settings.data_dir),
        "node": core.settings.node,
    }
    db: dict[str, Any] = {"url": core.db.display_url()}
    try:
        db["revision"] = core.db.current_revision()
        db["head"] = core.db.head_revision()
        db["up_to_date"] = db["revision"] == db["head"]
        if db["up_to_date"]:
            with core.db.read_session() as s:
                doc["counts"] = {
                    "applications": s.scalar(select(func.count()).select_from(Application)),
                    "companies": s.scalar(select(func.count()).select_from(Company)),
                    "credentials": s.scalar(select(func.count()).select_from(Credential)),
                    "runtemplates": s.scalar(select(func.count()).select_from(RunTemplate)),
                    "active_runtemplates": s.scalar(
                        select(func.count()).select_from(RunTemplate)
                        .where(RunTemplate.active.is_(True))),
                    "jobs": counts_by_state(s),
                }
                doc["search"] = OutputSearch(core.db.dialect).status(s)
        db["reachable"] = True
    except MultiFlexiError as exc:
        db.update(reachable=False, problem=exc.message)
    except Exception as exc:  # a status command reports, it does not crash
        db.update(reachable=False, problem=str(exc).splitlines()[0])
    doc["database"] = db
    doc["daemon"] = daemon_status(str(core.settings.socket))
    doc["engines"] = engine_status(core.settings)

    def text() -> None:
        d = doc["daemon"]
        rows: list[tuple[str, Any]] = [
            ("version", doc["version"]), ("config", doc["config"] or "(none)"),
            ("data dir", doc["data_dir"]), ("node", doc["node"]),
            ("database", db["url"]),
            ("schema", "unknown (the database cannot be reached)" if not db["reachable"]
             else f"{db.get('revision')} (up to date)" if db.get("up_to_date")
             else f"{db.get('revision')} (needs {db.get('head')})"),
            ("daemon", f"running: pid {d['pid']} on node {d['node']}, {d['status']} "
                       f"(max {d['max_parallel']} parallel; {d['socket']})"
             if d["reachable"] else f"not running ({d.get('problem')})"),
        ]
        if not db["reachable"]:
            rows.append(("database problem", db.get("problem")))
        for name, engine in doc["engines"].items():
            rows.append((name, f"reachable ({engine['url']})" if engine["reachable"]
                         else f"not reachable: {engine['problem']}"))
        if "search" in doc:
            rows.append(("search", search_text(doc["search"])))
        counts = doc.get("counts")
        if counts:
            jobs = counts["jobs"]
            rows += [
                ("applications", counts["applications"]), ("companies", counts["companies"]),
                ("credentials", counts["credentials"]),
                ("run templates", f"{counts['runtemplates']} "
                                  f"({counts['active_runtemplates']} active)"),
                ("jobs", ", ".join(f"{k} {v}" for k, v in sorted(jobs.items())) or "none"),
            ]
        fields(rows)

    emit(doc, text)
    if not db["reachable"]:
        raise click.exceptions.Exit(1)


@click.group(cls=AliasGroup)
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def upgrade() -> None:
    """Apply database migrations (the daemon also does this on start)."""
    core = state().core
    try:
        before, after = core.migrate()
    except CommandError as exc:  # a revision this version does not know
        raise StorageError(
            f"database {core.db.display_url()}: {exc}; was it upgraded by a newer "
            "MultiFlexi? Install that version (a downgrade is not supported)"
        ) from None
    made, problem = core.db.ensure_search_index()
    doc = {"url": core.db.display_url(), "before": before, "after": after,
           "search_index": "created" if made else "missing" if problem else "ok"}
    emit(doc, f"database {doc['url']}: " + (
        f"upgraded {before or 'empty'} -> {after}" if before != after else f"already at {after}"
    ) + ("; text search index created" if made else ""))
    if problem:
        click.echo(f"multiflexi-cli: warning: {problem}", err=True)


@click.command("demo", cls=LeafCommand)
def demo() -> None:
    """Load demo data: bundled upstream apps, two companies, credentials, templates."""
    from multiflexid.demo import seed

    report = seed(state().core)
    emit(report, "demo data: " + ", ".join(f"{v} {k}" for k, v in report.items()))


def register(cli: click.Group) -> None:
    cli.add_command(status)
    cli.add_command(db)
    cli.add_command(demo)
