"""Test data made through the real services (no fixtures that bypass the code under test)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.domain.jobstate import JobEnded, verdict
from multiflexid.services import apps, companies, runtemplates
from multiflexid.store.orm import Job, RunTemplate

SCHEMA = ("https://raw.githubusercontent.com/VitexSoftware/php-vitexsoftware-multiflexi-core/"
          "refs/heads/main/schema/application.json")


def shell_app(name: str = "Shell", script: str = "echo hello", **extra: Any) -> dict[str, Any]:
    """An app definition that runs ``sh -c $SCRIPT`` (the script is a configuration value)."""
    doc: dict[str, Any] = {
        "$schema": SCHEMA,
        "name": name,
        "description": f"test app {name}",
        "executable": "sh",
        "cmdparamsTemplate": "-c ${SCRIPT}",
        "environment": {
            "SCRIPT": {"type": "string", "description": "shell snippet", "defval": script},
            "TOKEN": {"type": "password", "description": "a secret", "defval": "tok-SECRET-123"},
        },
    }
    doc.update(extra)
    return doc


def write_app(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def make_template(
    core: Core,
    *,
    app_doc: dict[str, Any] | None = None,
    company: str = "acme",
    name: str = "tpl",
    now: datetime | None = None,
    config: dict[str, str] | None = None,
    **values: Any,
) -> int:
    """Import the app (if new), create the company (if new) and a run template; its id."""
    core.ensure_schema()
    definition, _warnings = parse_app(json.dumps(app_doc or shell_app()))
    with core.db.session() as s:
        app, _created = apps.upsert_app(s, definition)
        try:
            comp = companies.get_company(s, company)
        except Exception:
            comp = companies.create_company(s, name=company.title(), slug=company)
        rt: RunTemplate = runtemplates.create_runtemplate(
            s, app, comp, core.box, now or datetime.now(UTC), name=name, config=config,
            **values,
        )
        return rt.id


def run_to_end(core: Core, s: Session, job_id: int, now: datetime, *, exitcode: int | None = 0,
               outcome: str = "exited", node: str = "n1", reason: str | None = None
               ) -> JobEnded:
    """What the dispatcher does with a job it claimed, through the same transitions: start
    it, then end it with the app's meaning of its exit code."""
    tx = core.transitions
    tx.start(s, job_id, node, now)
    job = s.get(Job, job_id)
    assert job is not None
    app = apps.to_definition(apps.get_app(s, job.app_id, parts=True))
    return tx.end(s, job_id, verdict(outcome, exitcode, reason, app.exit_code(exitcode)), now)


def overdue_template(core: Core, *, name: str = "overdue", ago: timedelta = timedelta(hours=2),
                     deadline_after: str = "30m", **values: Any) -> int:
    """A daily template (UTC) whose one tick came ``ago`` and whose deadline (``ago`` minus
    ``deadline_after``) passed while nothing ran: created an hour before that tick, so its
    tick is tracked. Whenever a test runs, its current tick is missed until it is done."""
    tick = (datetime.now(UTC) - ago).replace(second=0, microsecond=0)
    return make_template(core, name=name, interv="c", cron=f"{tick.minute} {tick.hour} * * *",
                         timezone="UTC", deadline_after=deadline_after,
                         now=tick - timedelta(hours=1), **values)


def refuse(core: Core, statement: str, table: str) -> None:
    """A trigger that fails every ``statement`` (INSERT, UPDATE) of ``table`` with "boom",
    as a bad migration or a bug in a statement would: the database answers, but with an
    error that is no outage."""
    with core.db.engine.begin() as conn:
        if core.db.is_sqlite:
            conn.execute(text(f"CREATE TRIGGER boom BEFORE {statement} ON {table} "
                              "BEGIN SELECT RAISE(ABORT, 'boom'); END"))
        else:
            conn.execute(text("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'boom'; END $$"))
            conn.execute(text(f"CREATE TRIGGER boom BEFORE {statement} ON {table} "
                              "FOR EACH ROW EXECUTE FUNCTION boom()"))
