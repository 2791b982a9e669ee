"""Demo data for trying MultiFlexi out: the bundled upstream apps, two companies, templates.

The upstream apps' programs (multiflexi-probe, mtr-multiflexi...) are usually not
installed, so their jobs fail with "executable not found" — which shows how failures
look. One demo app of our own, "Hello MultiFlexi", runs with nothing installed (sh): it
prints, writes a result report and an artifact, and can be told to fail.

Idempotent: running it again changes nothing that exists already.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from multiflexi import examples
from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.domain.credjson import parse_credential_type
from multiflexid.services import apps, companies, credentials, runtemplates
from multiflexid.store.orm import Credential, RunTemplate

PROBE_UUID = "775ed801-2489-4981-bc14-d8a01cba1938"
MTR_UUID = "7492e4fe-0192-434b-b9c0-2497a360e17c"

HELLO_UUID = "5a1e0d3c-7b2f-4c1e-9d8a-6f4b3c2a1e0f"
HELLO = {
    "$schema": "https://raw.githubusercontent.com/VitexSoftware/"
               "php-vitexsoftware-multiflexi-core/refs/heads/main/schema/application.json",
    "schemaVersion": "3.4.0",
    "uuid": HELLO_UUID,
    "name": {"en": "Hello MultiFlexi", "cs": "Ahoj MultiFlexi"},
    "description": {"en": "Demo: says whom it runs for, writes a report, can fail on purpose",
                    "cs": "Ukázka: řekne, pro koho běží, zapíše report, umí selhat"},
    "version": "1.0",
    "executable": "sh",
    "cmdparamsTemplate": "-c ${SCRIPT}",
    "environment": {
        "GREETING": {"type": "string", "description": "What to say", "defval": "Hello",
                     "category": "Behavior"},
        "STEPS": {"type": "integer", "description": "How many steps (one a second)",
                  "defval": "3", "category": "Behavior"},
        "EXIT_CODE": {"type": "integer", "description": "Exit with this code", "defval": "0",
                      "category": "Behavior"},
        "API_TOKEN": {"type": "password", "description": "A secret (masked in output)",
                      "defval": "demo-token-123", "category": "Security"},
        "RESULT_FILE": {"type": "string", "description": "Report file",
                        "defval": "hello_report.json"},
        "SCRIPT": {
            "type": "text", "description": "What runs",
            "defval": (
                'echo "$GREETING from job $MULTIFLEXI_JOB_ID for $MULTIFLEXI_COMPANY_NAME"; '
                'echo "token: $API_TOKEN"; '
                'i=1; while [ "$i" -le "$STEPS" ]; do echo "step $i of $STEPS"; '
                'sleep 1; i=$((i+1)); done; '
                '[ "$EXIT_CODE" = 0 ] && status=success || status=error; '
                'printf \'{"producer": "hello", "status": "%s", "timestamp": "%s", '
                '"message": "%s steps", "metrics": {"steps": %s}}\' '
                '"$status" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$STEPS" "$STEPS" '
                '> "$RESULT_FILE"; '
                '[ "$EXIT_CODE" = 0 ] || echo "failing with $EXIT_CODE as asked" >&2; '
                'exit "$EXIT_CODE"'
            ),
        },
    },
    "artifacts": [{"name": "Hello report", "path": r"hello_report\.json", "type": "json"}],
    "exitCodes": {
        "0": {"description": "Said hello", "severity": "success", "retry": False},
        "3": {"description": "Failed on purpose (may be retried)", "severity": "error",
              "retry": True},
        "4": {"description": "Failed on purpose (never retried)", "severity": "error",
              "retry": False},
    },
}

COMPANIES = [
    {"name": "Acme s.r.o.", "slug": "acme", "ic": "12345678", "email": "office@acme.example"},
    {"name": "Globex a.s.", "slug": "globex", "ic": "87654321", "email": "it@globex.example"},
]


def seed(core: Core) -> dict[str, Any]:
    core.ensure_schema()
    db, box = core.db, core.box
    report: dict[str, Any] = {}
    results = apps.import_files(db, examples.app_files())
    with db.session() as s:
        apps.upsert_app(s, parse_app(json.dumps(HELLO), "demo")[0])
    report["applications"] = sum(r.ok for r in results) + 1
    with db.session() as s:
        for path in examples.credential_type_files():
            definition = parse_credential_type(path.read_text(), str(path))
            credentials.upsert_credential_type(s, definition)
        for values in COMPANIES:
            if companies.find_by_slug(s, values["slug"]) is None:
                companies.create_company(s, **values)
    now = datetime.now(UTC)
    with db.session() as s:
        acme = companies.get_company(s, "acme")
        globex = companies.get_company(s, "globex")
        probe_type = credentials.get_credential_type(s, "Probe")
        cred = s.scalar(select(Credential).where(
            Credential.company_id == acme.id, Credential.name == "probe secret"))
        if cred is None:
            cred = credentials.create_credential(
                s, acme, probe_type, "probe secret", {"PASSWORD": "demo-Secret-42"}, box)
        probe = apps.get_app(s, PROBE_UUID)
        mtr = apps.get_app(s, MTR_UUID)
        hello = apps.get_app(s, HELLO_UUID)
        wanted: list[tuple[Any, Any, str, dict[str, Any], list[int], dict[str, str]]] = [
            (hello, acme, "Hello every minute", {"interv": "i"}, [], {}),
            (hello, globex, "Hello, flaky", {"interv": "h", "max_attempts": 3,
                                             "retry_backoff": "linear", "retry_min_gap": 5},
             [], {"EXIT_CODE": "3"}),
            (probe, acme, "Probe hourly", {"interv": "h"}, [cred.id], {}),
            (probe, acme, "Probe failing", {"interv": "n"}, [],
             {"FORCE_EXITCODE": "1", "PASSWORD": "other-secret"}),
            (probe, globex, "Probe daily", {"interv": "d", "timezone": "Europe/Prague"}, [],
             {"PASSWORD": "globex-secret"}),
            (mtr, globex, "Traceroute", {"interv": "c", "cron": "*/15 * * * *"}, [], {}),
        ]
        for app, company, name, sched, creds, config in wanted:
            exists = s.scalar(select(RunTemplate).where(
                RunTemplate.company_id == company.id, RunTemplate.name == name))
            if exists is None:
                runtemplates.create_runtemplate(
                    s, app, company, box, now, name=name, config=config,
                    credential_ids=creds, **sched,
                )
        report["runtemplates"] = len(runtemplates.list_runtemplates(s))
        report["companies"] = len(companies.list_companies(s))
    return report
