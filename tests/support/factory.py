"""Test data made through the real services (no fixtures that bypass the code under test)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.services import apps, companies, runtemplates
from multiflexid.store.orm import RunTemplate

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
