"""The job lifecycle on a real database (SQLite and PostgreSQL): every transition of the
store's API, every illegal one refused, ends recorded once under concurrency, events
only after a commit — then the daemon's hot path in-process (dispatcher, writer, socket
server with its real handlers) with the in-memory FakeExecutor.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict
from multiflexid.core import Core
from multiflexid.dbthread import DbThread
from multiflexid.domain.jobstate import TRANSITIONS, IllegalTransition, JobEnded, verdict
from multiflexid.services import nodes
from multiflexid.services.jobs import create_job
from multiflexid.store.orm import Job, RunTemplate, Schedule
from tests.conftest import Env
from tests.support.factory import make_template, shell_app
from tests.support.inproc import daemon_in_process

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OK = verdict("exited", 0, None, None)


def _queue(core: Core, rt_id: int, **kw: Any) -> int:
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        return create_job(s, core.transitions, rt, schedule_type="adhoc", launched_by="t",
                          after=kw.pop("after", T0), box=core.box, **kw).id


def _state(core: Core, job_id: int) -> Job:
    with core.db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _in(core: Core, fn: Callable[[Session], Any]) -> Any:
    with core.db.session() as s:
        return fn(s)


def test_a_job_goes_claim_start_end_and_each_step_is_on_record(core: Core) -> None:
    tx = core.transitions
    rt = make_template(core)
    job_id = _queue(core, rt)
    assert _state(core, job_id).state == "scheduled"
    assert _in(core, lambda s: tx.claim(s, T0, "n1", 5)) == [job_id]
    claimed = _state(core, job_id)
    assert (claimed.state, claimed.node, claimed.begin) == ("claimed", "n1", None)
    assert claimed.claimed_at == T0
    with core.db.read_session() as s:  # out of the queue
        assert s.scalar(select(Schedule).where(Schedule.job_id == job_id)) is None
    _in(core, lambda s: tx.start(s, job_id, "n1", T0 + timedelta(seconds=1)))
    running = _state(core, job_id)
    assert (running.state, running.begin) == ("running", T0 + timedelta(seconds=1))
    ended = _in(core, lambda s: tx.end(s, job_id, verdict("exited", 3, None, None),
                                       T0 + timedelta(seconds=5)))
    assert isinstance(ended, JobEnded)
    assert (ended.state, ended.exitcode, ended.runtemplate_id) == ("failed", 3, rt)
    done = _state(core, job_id)
    assert (done.state, done.exitcode, done.end) == ("failed", 3, T0 + timedelta(seconds=5))


def test_every_illegal_transition_is_refused_and_changes_nothing(core: Core) -> None:
    """Each transition from each state it may not start from: an IllegalTransition (a
    Conflict on the wire) naming the job's state; the row stays as it was."""
    tx = core.transitions
    rt = make_template(core)
    # One job in each state, made through the transitions themselves.
    queued = _queue(core, rt)
    jobs: dict[str, int] = {"scheduled": queued}
    _in(core, lambda s: tx.claim(s, T0, "n1", 1))
    jobs["claimed"] = queued
    del jobs["scheduled"]
    other = make_template(core, name="other")
    running = _queue(core, other)
    _in(core, lambda s: tx.claim(s, T0, "n1", 1))
    _in(core, lambda s: tx.start(s, running, "n1", T0))
    jobs["running"] = running
    jobs["scheduled"] = _queue(core, make_template(core, name="third"))
    finished = _queue(core, make_template(core, name="fourth"))
    _in(core, lambda s: tx.cancel(s, [finished], T0, "test"))
    jobs["cancelled"] = finished

    attempts: dict[str, Callable[[Session, int], Any]] = {
        "start": lambda s, j: tx.start(s, j, "n1", T0),
        "end": lambda s, j: tx.end(s, j, OK, T0),
        "block": lambda s, j: tx.block(s, j, T0, "missing X"),
        "cancel": lambda s, j: tx.cancel(s, [j], T0, "test"),
    }
    refused = 0
    for state, job_id in jobs.items():
        for name, attempt in attempts.items():
            if state in TRANSITIONS[name].sources:
                continue
            before = _state(core, job_id)
            with pytest.raises(IllegalTransition) as caught, core.db.session() as s:
                attempt(s, job_id)
            assert isinstance(caught.value, Conflict)
            assert caught.value.message.startswith(f"job {job_id} is {state}; {name} needs")
            after = _state(core, job_id)
            assert (after.state, after.end, after.updated_at) == (
                before.state, before.end, before.updated_at), (state, name)
            refused += 1
    assert refused == 10  # running 3, scheduled 3, cancelled 4 (claimed allows all four)
    # A start by another node than the one that claimed the job is refused too.
    with pytest.raises(IllegalTransition), core.db.session() as s:
        tx.start(s, jobs["claimed"], "n2", T0)
    # Batches leave jobs in other states alone: lose takes only running jobs, release
    # only claimed ones.
    assert [e.job_id for e in _in(core, lambda s: tx.lose(s, list(jobs.values()), T0,
                                                          "gone"))] == [running]
    assert _in(core, lambda s: tx.release(s, list(jobs.values()), T0)) == [jobs["claimed"]]


def test_a_claimed_job_goes_back_to_the_queue_and_its_start_is_refused(core: Core) -> None:
    """A claim not started in time (or by a node that died before starting it) is
    released: queued again, and the node that claimed it can no longer start it."""
    tx = core.transitions
    job_id = _queue(core, make_template(core))
    _in(core, lambda s: tx.claim(s, T0, "slow", 1))
    later = T0 + timedelta(seconds=30)
    assert _in(core, lambda s: nodes.release_stale_claims(s, tx, later, 5.0)) == [job_id]
    back = _state(core, job_id)
    assert (back.state, back.node, back.claimed_at) == ("scheduled", None, None)
    with pytest.raises(IllegalTransition), core.db.session() as s:
        tx.start(s, job_id, "slow", later)  # the slow node wakes up: nothing launched
    assert _in(core, lambda s: tx.claim(s, later, "fast", 1)) == [job_id]


def test_a_job_ends_once_whoever_races_to_end_it(core: Core) -> None:
    """The node ending it, a node reaping it as lost and a cancel racing for one running
    job: exactly one wins, one JobEnded, the template counted once."""
    tx = core.transitions
    rt = make_template(core)
    for round_ in range(5):
        job_id = _queue(core, rt)
        _in(core, lambda s: tx.claim(s, T0, "n1", 1))
        _in(core, lambda s, j=job_id: tx.start(s, j, "n1", T0))
        barrier = threading.Barrier(3)
        outcomes: list[Any] = []

        def race(fn: Callable[[Session], Any], barrier: threading.Barrier = barrier,
                 outcomes: list[Any] = outcomes) -> None:
            barrier.wait()
            try:
                with core.db.session() as s:
                    outcomes.append(fn(s))
            except IllegalTransition as exc:
                outcomes.append(exc)

        contenders = [
            lambda s, j=job_id: tx.end(s, j, OK, T0),
            lambda s, j=job_id: tx.lose(s, [j], T0, "node gone"),
            lambda s, j=job_id: tx.end(s, j, verdict("exited", 1, None, None), T0),
        ]
        threads = [threading.Thread(target=race, args=(fn,)) for fn in contenders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        won = [o for o in outcomes if isinstance(o, JobEnded)
               or (isinstance(o, list) and o)]
        assert len(outcomes) == 3 and len(won) == 1, (round_, outcomes)
        final = _state(core, job_id).state
        assert final in ("succeeded", "lost", "failed")
    with core.db.read_session() as s:
        counted = s.get(RunTemplate, rt)
        assert counted is not None
        ended = s.scalars(select(Job.state).where(Job.runtemplate_id == rt)).all()
    assert counted.successful_jobs_count == ended.count("succeeded")
    assert counted.failed_jobs_count == ended.count("failed")


def test_events_are_handed_on_only_after_their_commit(core: Core) -> None:
    """The group-committing writer: a batch with one failing write commits the others
    (each on its own), and only committed ends are handed on as events."""
    tx = core.transitions
    ids = [_queue(core, make_template(core, name=f"t{i}")) for i in range(3)]
    _in(core, lambda s: tx.claim(s, T0, "n1", 3))
    db = DbThread(core.db)
    seen: list[Any] = []
    db.on_events = seen.extend

    def failing_end(s: Session, job_id: int) -> None:
        tx.end(s, job_id, OK, T0)
        raise RuntimeError("a bug after the end")

    async def writes() -> list[Any]:
        return await asyncio.gather(
            db.write(tx.end, ids[0], OK, T0), db.write(failing_end, ids[1]),
            db.write(tx.end, ids[2], OK, T0), return_exceptions=True)

    try:
        results = asyncio.run(writes())
    finally:
        db.close()
    assert isinstance(results[1], RuntimeError)
    assert [e.job_id for e in seen] == [ids[0], ids[2]]
    assert [_state(core, j).state for j in ids] == ["succeeded", "claimed", "succeeded"]


def test_a_retry_is_queued_by_the_end_that_allows_it(core: Core) -> None:
    doc = shell_app("Coded")
    doc["exitCodes"] = {"2": {"description": "transient", "severity": "error", "retry": True}}
    rt = make_template(core, app_doc=doc, max_attempts=2, retry_backoff="fixed",
                       retry_min_gap=30)
    job_id = _queue(core, rt)
    tx = core.transitions
    _in(core, lambda s: tx.claim(s, T0, "n1", 1))
    _in(core, lambda s: tx.start(s, job_id, "n1", T0))
    from multiflexid.domain.appdef import ExitCodeDef

    meaning = ExitCodeDef(2, "transient", "error", retry=True)
    ended = _in(core, lambda s: tx.end(s, job_id, verdict("exited", 2, None, meaning), T0))
    assert ended.retry_job_id is not None
    assert "retry 2/2 queued as job" in (ended.reason or "")
    retry = _state(core, ended.retry_job_id)
    assert (retry.state, retry.attempt, retry.retry_of_id) == ("scheduled", 2, job_id)


# --- the daemon in-process ------------------------------------------------------------------


def _fake_template(core: Core, name: str = "fake", **config: str) -> int:
    return make_template(core, name=name, config={"SCRIPT": "unused", **config})


def test_run_now_cancel_and_ends_through_the_socket(mf_env: Env, core: Core) -> None:
    """Run now, cancel while running, a refused cancel, a declared failure — through the
    real socket handlers, the dispatcher and the writer, on the FakeExecutor."""
    core.ensure_schema()
    ok = _fake_template(core, "ok", FAKE_OUTPUT="hello\\n")
    held = _fake_template(core, "held", FAKE_HOLD="1")
    bad = _fake_template(core, "bad", FAKE_EXIT="7")

    async def scenario() -> None:
        async with daemon_in_process(mf_env) as d:
            job = await d.call("runtemplate.run", id=ok)
            done = await d.wait_state(job["id"], "succeeded")
            assert done["exitcode"] == 0 and done["begin"] and done["pid"]
            page = await d.call("job.output", id=job["id"])
            assert [c["data"] for c in page["chunks"]] == ["hello\n"]
            job = await d.call("runtemplate.run", id=held)
            await d.fake.wait_started(job["id"])
            assert (await d.job(job["id"]))["state"] == "running"
            reply = await d.call("job.cancel", id=job["id"])
            assert reply["cancel"] == "requested"
            cancelled = await d.wait_state(job["id"], "cancelled")
            assert "cancelled" in (cancelled["reason"] or "")
            with pytest.raises(Conflict, match="already cancelled; nothing to cancel"):
                await d.call("job.cancel", id=job["id"])
            job = await d.call("runtemplate.run", id=bad)
            failed = await d.wait_state(job["id"], "failed")
            assert failed["exitcode"] == 7

    asyncio.run(scenario())


def test_cancel_while_claimed_launches_nothing(mf_env: Env, core: Core, backend: str) -> None:
    """A claimed job cancelled before its start: cancelled, never launched. On SQLite the
    daemon itself holds it claimed (waiting for its one slot); on PostgreSQL a node
    claims only what it can start, so another node's claim stands in."""
    core.ensure_schema()
    holder = _fake_template(core, "holder", FAKE_HOLD="1")
    waiting = _fake_template(core, "waiting")

    async def scenario() -> None:
        async with daemon_in_process(mf_env, MULTIFLEXI_MAX_PARALLEL="1") as d:
            first = await d.call("runtemplate.run", id=holder)
            await d.fake.wait_started(first["id"])
            second = await d.call("runtemplate.run", id=waiting)
            if backend == "postgresql":
                await asyncio.sleep(0.3)
                assert (await d.job(second["id"]))["state"] == "scheduled"  # not hoarded
                _in(core, lambda s: core.transitions.claim(
                    s, datetime.now(UTC), "other-node", 5))
            state = await d.wait_state(second["id"], "claimed")
            assert state["begin"] is None
            await d.call("job.cancel", id=second["id"])
            cancelled = await d.wait_state(second["id"], "cancelled")
            assert cancelled["begin"] is None and "before it" in cancelled["reason"]
            if backend == "postgresql":
                with pytest.raises(IllegalTransition), core.db.session() as s:
                    core.transitions.start(s, second["id"], "other-node", datetime.now(UTC))
            d.fake.release(first["id"])
            await d.wait_state(first["id"], "succeeded")
            assert second["id"] not in d.fake.runs  # never launched

    asyncio.run(scenario())


def test_the_dispatcher_never_runs_two_jobs_of_a_template_at_once(mf_env: Env,
                                                                   core: Core) -> None:
    core.ensure_schema()
    rt = _fake_template(core, FAKE_SECONDS="0.05")

    async def scenario() -> None:
        async with daemon_in_process(mf_env, MULTIFLEXI_MAX_PARALLEL="4") as d:
            ids = [(await d.call("runtemplate.run", id=rt))["id"] for _ in range(6)]
            for job_id in ids:
                await d.wait_state(job_id, "succeeded")
            assert sorted(d.fake.runs) == ids
        with core.db.read_session() as s:
            rows = s.execute(select(Job.begin, Job.end).where(Job.id.in_(ids))
                             .order_by(Job.begin)).all()
        for (_b1, e1), (b2, _e2) in itertools.pairwise(rows):
            assert b2 >= e1  # one after the other

    asyncio.run(scenario())
