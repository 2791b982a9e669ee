"""A small job history for the search and list tests, made by the real daemon.

Every job runs through the in-process daemon (the dispatcher, the output masking, the
writer and, on SQLite, the indexer) on the FakeExecutor, printing what the table below
says; then its times are set to fixed moments so sorts and time ranges are exact. Two
jobs never ran (one queued, one cancelled before it ran): they have no begin.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from multiflexid.core import Core
from multiflexid.services import jobs, runtemplates
from multiflexid.store.orm import Job
from tests.conftest import Env
from tests.support.factory import make_template, shell_app
from tests.support.inproc import daemon_in_process

T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
# The value of the shell app's secret field TOKEN: masked wherever a job prints it.
SECRET = "tok-SECRET-123"


@dataclass(frozen=True)
class Run:
    template: str
    output: str
    exit: int
    hour: int  # created at T0 + hour (and began 5 s later)
    seconds: int  # how long it ran


RUNS = (
    Run("acme-import", "imported invoice FV-0001 for Acme\\nall done", 0, 0, 30),
    Run("globex-import", "ERROR: connection refused by abraflexi.example", 1, 1, 5),
    Run("acme-report", "report ready: Účetní doklady 2024", 0, 2, 120),
    Run("acme-import", "imported invoice FV-0004\\nERROR: duplicate invoice FV-0004", 1, 3, 60),
    Run("globex-import", f"imported invoice FV-0005 for Globex\\nusing token {SECRET}", 0, 4,
        30),
)
TEMPLATES = {"acme-import": ("acme", "Importer"), "globex-import": ("globex", "Importer"),
             "acme-report": ("acme", "Reporter")}


@dataclass
class History:
    ran: list[int]  # the jobs of RUNS, in order
    queued: int  # acme-import, never started (created T0 + 5 h)
    cancelled: int  # acme-report, cancelled before it ran (T0 + 6 h)
    templates: dict[str, int]
    companies: dict[str, int]
    apps: dict[str, int]

    @property
    def all(self) -> list[int]:
        return [*self.ran, self.queued, self.cancelled]


def make_history(env: Env, core: Core) -> History:
    templates = {name: make_template(core, app_doc=shell_app(app), company=company,
                                     name=name, config={"SCRIPT": "unused"})
                 for name, (company, app) in TEMPLATES.items()}

    async def run_all() -> list[int]:
        async with daemon_in_process(env) as d:
            ran = []
            for run in RUNS:
                job = await d.call("runtemplate.run", id=templates[run.template],
                                   env={"FAKE_OUTPUT": run.output, "FAKE_EXIT": str(run.exit)})
                await d.wait_state(job["id"], "succeeded", "failed")
                ran.append(job["id"])
            return ran

    ran = asyncio.run(run_all())
    with core.db.session() as s:
        for job_id, run in zip(ran, RUNS, strict=True):
            created = T0 + timedelta(hours=run.hour)
            begin = created + timedelta(seconds=5)
            s.execute(update(Job).where(Job.id == job_id).values(
                created_at=created, schedule=created, begin=begin,
                end=begin + timedelta(seconds=run.seconds)))
        queued = _queued(core, s, templates["acme-import"], T0 + timedelta(hours=5))
        cancelled = _queued(core, s, templates["acme-report"], T0 + timedelta(hours=6))
        core.transitions.cancel(s, [cancelled], T0 + timedelta(hours=6, minutes=1),
                                "cancelled by test before it ran")
        rts = {name: runtemplates.get_runtemplate(s, rt) for name, rt in templates.items()}
        companies = {rt.company_id: name.split("-")[0] for name, rt in rts.items()}
        apps = {TEMPLATES[name][1]: rt.app_id for name, rt in rts.items()}
    return History(ran, queued, cancelled, templates,
                   {slug: cid for cid, slug in companies.items()}, apps)


def _queued(core: Core, s: object, rt_id: int, created: datetime) -> int:
    from sqlalchemy.orm import Session

    assert isinstance(s, Session)
    rt = runtemplates.get_runtemplate(s, rt_id)
    job = jobs.create_job(s, core.transitions, rt, schedule_type="adhoc-cli",
                          launched_by="test", after=created + timedelta(days=3650),
                          box=core.box)
    s.flush()
    s.execute(update(Job).where(Job.id == job.id).values(created_at=created,
                                                         schedule=created))
    return job.id
