"""The "run now" calls the daemon's writer takes in one commit queue their jobs with one
statement (operations.run_now): each call is still checked against its caller's role, a
refusal fails that call alone, every job is audited as its own caller's and is queued
when the answer comes — on SQLite and PostgreSQL, through the real writer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from sqlalchemy import select

from multiflexi.errors import Forbidden, NotFound
from multiflexid.access import Permissions
from multiflexid.core import Core
from multiflexid.operations import Caller
from multiflexid.store.audit import Actor
from multiflexid.store.orm import AuditEntry, Job, RunTemplate, Schedule
from tests.conftest import Env
from tests.support.factory import make_template
from tests.support.inproc import daemon_in_process


def test_the_calls_of_one_commit_are_each_checked_queued_and_audited(
        mf_env: Env, core: Core) -> None:
    acme = make_template(core, company="acme", name="acme-job")
    globex = make_template(core, company="globex", name="globex-job")
    with core.db.read_session() as s:
        company = dict(s.execute(select(RunTemplate.id, RunTemplate.company_id)).all())
    slugs = {company[acme]: "acme", company[globex]: "globex"}
    alice = Caller(Permissions("alice", companies={company[acme]: "operator"}, slugs=slugs),
                   Actor("alice", "socket"))
    carol = Caller(Permissions("carol", companies={company[globex]: "operator"}, slugs=slugs),
                   Actor("carol", "socket", login_user="dave"))
    asked = [(alice, acme), (alice, globex), (carol, globex), (carol, acme), (alice, 999999)]

    async def scenario() -> tuple[list[Any], int]:
        async with daemon_in_process(mf_env, MULTIFLEXI_MAX_PARALLEL="1") as d:
            gate = threading.Event()
            # the writer waits in a transaction of its own while every call is submitted:
            # then it takes them all in its next one
            held = d.daemon.db.submit(lambda _s: gate.wait(10))
            calls = [asyncio.ensure_future(d.daemon.ops.run_now(
                caller, rt, {}, secret=[], via="tui")) for caller, rt in asked * 3]
            await asyncio.sleep(0)  # each call runs up to its wait for the writer
            batches = d.daemon.db.batches
            gate.set()
            await asyncio.wrap_future(held)
            results = await asyncio.gather(*calls, return_exceptions=True)
            return results, d.daemon.db.batches - batches

    results, commits = asyncio.run(scenario())
    assert commits <= 3  # the held one, the calls' one (and a claim, perhaps)
    jobs: dict[int, tuple[str, int]] = {}
    for (caller, rt), got in zip(asked * 3, results, strict=True):
        if rt == 999999:
            assert isinstance(got, NotFound) and got.message == "no run template with id '999999'"
        elif (caller, rt) in ((alice, globex), (carol, acme)):
            other = "globex" if rt == globex else "acme"
            assert isinstance(got, Forbidden), got
            assert got.message == (f"runtemplate.run needs role operator on company {other}; "
                                   f"{caller.user} has no role there")
        else:
            assert isinstance(got, dict), got
            assert (got["runtemplate_id"], got["launched_by"], got["schedule_type"],
                    got["state"]) == (rt, caller.user, "adhoc-tui", "scheduled")
            jobs[got["id"]] = (caller.user, rt)
    assert len(jobs) == 6  # two allowed calls, three times: six jobs, six ids

    with core.db.read_session() as s:
        rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(jobs)))}
        assert {j: (r.launched_by, r.runtemplate_id) for j, r in rows.items()} == jobs
        entries = list(s.scalars(select(AuditEntry).where(AuditEntry.entity == "job")))
        queued = set(s.scalars(select(Schedule.job_id)))
    by_job = {e.entity_id: e for e in entries if e.action == "run"}
    assert set(by_job) == set(jobs)
    for job_id, (user, rt) in jobs.items():
        e = by_job[job_id]
        assert (e.user, e.login_user, e.company_id, e.runtemplate_id) == (
            user, "dave" if user == "carol" else None, company[rt], rt)
        assert e.summary.startswith(f"job {job_id} of run template {rt} ")
        # queued with its job (or already taken from the queue by the dispatcher)
        assert job_id in queued or rows[job_id].state != "scheduled"
    assert len({e.at for e in by_job.values()}) == 1  # one commit
