"""Demo data for trying MultiFlexi out: the bundled upstream apps, two companies, templates.

Idempotent: running it again changes nothing that exists already.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from multiflexi import examples
from multiflexid.core import Core
from multiflexid.domain.credjson import parse_credential_type
from multiflexid.services import apps, companies, credentials, runtemplates
from multiflexid.store.orm import Company, Credential, RunTemplate

PROBE_UUID = "775ed801-2489-4981-bc14-d8a01cba1938"
MTR_UUID = "7492e4fe-0192-434b-b9c0-2497a360e17c"

COMPANIES = [
    {"name": "Acme s.r.o.", "slug": "acme", "ic": "12345678", "email": "office@acme.example"},
    {"name": "Globex a.s.", "slug": "globex", "ic": "87654321", "email": "it@globex.example"},
]


def seed(core: Core) -> dict[str, Any]:
    core.ensure_schema()
    db, box = core.db, core.box
    report: dict[str, Any] = {}
    results = apps.import_files(db, examples.app_files())
    report["applications"] = sum(r.ok for r in results)
    with db.session() as s:
        for path in examples.credential_type_files():
            definition = parse_credential_type(path.read_text(), str(path))
            credentials.upsert_credential_type(s, definition)
        for values in COMPANIES:
            if s.scalar(select(Company).where(Company.slug == values["slug"])) is None:
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
        wanted = [
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
