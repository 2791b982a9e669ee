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
from multiflexi.states import JOB_STATES
from multiflexid.core import Core
from multiflexid.dbthread import DbThread
from multiflexid.domain.jobstate import TRANSITIONS, IllegalTransition, JobEnded, verdict
from multiflexid.services import nodes
from multiflexid.services.jobs import cancel_queued_of_template, create_job
from multiflexid.store.orm import Job, RunTemplate, Schedule
from multiflexid.store.transitions import Batch
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


def _one_job_in_each_state(core: Core) -> dict[str, int]:
    """A job in every state, each made through the transitions, each of its own template
    but the pending one (it waits behind the claimed job of its template)."""
    tx = core.transitions

    def claimed(name: str, **values: Any) -> int:
        job_id = _queue(core, make_template(core, name=name, **values))
        assert _in(core, lambda s: tx.claim(s, T0, "n1", 1)) == [job_id]
        return job_id

    def running(name: str) -> int:
        job_id = claimed(name)
        _in(core, lambda s: tx.start(s, job_id, "n1", T0))
        return job_id

    jobs = {"claimed": claimed("claimed"), "running": running("running")}
    for state, how in (("succeeded", OK), ("failed", verdict("exited", 1, None, None)),
                       ("timed_out", verdict("timed_out", 143, "timed out", None))):
        jobs[state] = running(state)
        _in(core, lambda s, j=jobs[state], v=how: tx.end(s, j, v, T0))
    jobs["lost"] = running("lost")
    _in(core, lambda s: tx.lose(s, [jobs["lost"]], T0, "node gone"))
    jobs["blocked"] = claimed("blocked")
    _in(core, lambda s: tx.block(s, jobs["blocked"], T0, "missing X"))
    jobs["cancelled"] = _queue(core, make_template(core, name="cancelled"))
    _in(core, lambda s: tx.cancel(s, [jobs["cancelled"]], T0, "test"))
    jobs["pending"] = _queue(core, _state(core, jobs["claimed"]).runtemplate_id)
    jobs["scheduled"] = _queue(core, make_template(core, name="scheduled"))
    assert {state: _state(core, j).state for state, j in jobs.items()} == {
        state: state for state in JOB_STATES}
    return jobs


def _row(core: Core, job_id: int) -> tuple[Any, ...]:
    job = _state(core, job_id)
    return (job.state, job.node, job.begin, job.end, job.reason, job.updated_at)


def test_every_illegal_transition_is_refused_and_changes_nothing(core: Core) -> None:
    """Every transition from every state it may not start from (every final state
    included): one job is an IllegalTransition (a Conflict on the wire) naming its state,
    a batch reports it skipped with its state, a claim leaves it be even when the queue
    points at it; the row stays as it was."""
    tx = core.transitions
    jobs = _one_job_in_each_state(core)
    per_job: dict[str, Callable[[Session, int], Any]] = {
        "start": lambda s, j: tx.start(s, j, "n1", T0),
        "end": lambda s, j: tx.end(s, j, OK, T0),
        "block": lambda s, j: tx.block(s, j, T0, "missing X"),
        "cancel": lambda s, j: tx.cancel(s, [j], T0, "test"),  # strict
        "retry": lambda s, j: tx.retry(s, j),
    }
    batches: dict[str, Callable[[Session, list[int]], Batch[Any]]] = {
        "release": lambda s, ids: tx.release(s, ids, T0),
        "lose": lambda s, ids: tx.lose(s, ids, T0, "gone"),
        "cancel": lambda s, ids: tx.cancel(s, ids, T0, "test", strict=False),
    }
    assert set(per_job) | set(batches) | {"create", "claim"} == set(TRANSITIONS)
    rows = {j: _row(core, j) for j in jobs.values()}
    refused = 0
    for name, attempt in per_job.items():
        for state, job_id in jobs.items():
            if state in TRANSITIONS[name].sources:
                continue
            with pytest.raises(IllegalTransition) as caught, core.db.session() as s:
                attempt(s, job_id)
            assert isinstance(caught.value, Conflict)
            assert caught.value.message.startswith(f"job {job_id} is {state}; {name} needs")
            assert _row(core, job_id) == rows[job_id], (state, name)
            refused += 1
    for name, batch in batches.items():
        wrong = {j: state for state, j in jobs.items()
                 if state not in TRANSITIONS[name].sources}
        done = _in(core, lambda s, b=batch, ids=[*wrong, 999_999]: b(s, ids))
        assert done.done == [] and done.skipped == {**wrong, 999_999: None}, name
        assert all(_row(core, j) == rows[j] for j in wrong), name
        refused += len(wrong)
    # claim: the queue pointing at jobs in any state (a stale entry): only queued jobs
    # are taken — here the scheduled one; pending waits behind its template's claim.
    with core.db.session() as s:
        s.add_all(Schedule(job_id=j, runtemplate_id=_state(core, j).runtemplate_id,
                           after=T0) for state, j in jobs.items()
                  if state not in TRANSITIONS["claim"].sources)
    assert _in(core, lambda s: tx.claim(s, T0, "n2", 50)) == [jobs["scheduled"]]
    for state, job_id in jobs.items():
        if state not in ("scheduled",):
            assert _row(core, job_id) == rows[job_id], ("claim", state)
            refused += state not in TRANSITIONS["claim"].sources
    # Each (transition, state) pair the state machine does not allow, counted by hand:
    # start 9, end 8, block 9, cancel 7 (strict) + 7 (batch), retry 8, release 9, lose 9,
    # claim 8.
    assert refused == 9 + 8 + 9 + 7 + 7 + 8 + 9 + 9 + 8
    # A start by another node than the one that claimed the job is refused too.
    with pytest.raises(IllegalTransition), core.db.session() as s:
        tx.start(s, jobs["claimed"], "n2", T0)


def test_batches_report_the_jobs_they_left_alone(core: Core) -> None:
    """A batch of jobs in mixed states: those in an allowed state change, the others come
    back as skipped with their states (what the callers log), and a strict cancel
    changes nothing when one of them may not be cancelled."""
    tx = core.transitions
    jobs = _one_job_in_each_state(core)
    mixed = [jobs["running"], jobs["succeeded"], jobs["claimed"]]
    with pytest.raises(IllegalTransition, match=f"job {jobs['running']} is running"), \
            core.db.session() as s:
        tx.cancel(s, [jobs["scheduled"], jobs["running"]], T0, "test")
    assert _state(core, jobs["scheduled"]).state == "scheduled"  # strict: all or nothing
    released = _in(core, lambda s: tx.release(s, mixed, T0))
    assert (released.done, released.skipped) == (
        [jobs["claimed"]], {jobs["running"]: "running", jobs["succeeded"]: "succeeded"})
    assert str(released) == (f"job {jobs['running']} is running, "
                             f"job {jobs['succeeded']} is succeeded")
    lost = _in(core, lambda s: tx.lose(s, mixed, T0, "gone"))
    assert [e.job_id for e in lost.done] == [jobs["running"]]
    assert lost.skipped == {jobs["succeeded"]: "succeeded", jobs["claimed"]: "scheduled"}
    # Removing a template cancels its queued jobs; those that started are reported.
    rt_id = _state(core, jobs["scheduled"]).runtemplate_id
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        cancelled = cancel_queued_of_template(s, tx, rt, "gone", T0)
    assert [e.job_id for e in cancelled.done] == [jobs["scheduled"]]
    assert cancelled.skipped == {}


def test_a_claimed_job_goes_back_to_the_queue_and_its_start_is_refused(core: Core) -> None:
    """A claim not started in time (or by a node that died before starting it) is
    released: queued again, and the node that claimed it can no longer start it."""
    tx = core.transitions
    job_id = _queue(core, make_template(core))
    _in(core, lambda s: tx.claim(s, T0, "slow", 1))
    later = T0 + timedelta(seconds=30)
    assert _in(core, lambda s: nodes.release_stale_claims(s, tx, later, 5.0)).done == [job_id]
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
               or (isinstance(o, Batch) and o.done)]
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


def test_retry_is_a_transition_of_its_own(core: Core) -> None:
    """retry: a failed (or timed-out) job's next attempt, a new job with the same one-off
    values, queued the template's gap after the end; the ended job stays failed and says
    which job retries it. The policy (attempts left, exit codes) is the end path's."""
    tx = core.transitions
    rt = make_template(core, retry_backoff="fixed", retry_min_gap=30)
    job_id = _queue(core, rt, overrides={"SCRIPT": "exit 1"})
    _in(core, lambda s: tx.claim(s, T0, "n1", 1))
    _in(core, lambda s: tx.start(s, job_id, "n1", T0))
    ended = _in(core, lambda s: tx.end(s, job_id, verdict("exited", 1, None, None), T0))
    assert ended.retry_job_id is None  # max_attempts 1: the end queued none
    retried = _in(core, lambda s: tx.retry(s, job_id))
    assert (retried.attempt, retried.note) == (
        2, f"retry 2/1 queued as job {retried.job_id} in 30 s")
    new = _state(core, retried.job_id)
    assert (new.state, new.attempt, new.retry_of_id, new.schedule_type, new.overrides) == (
        "scheduled", 2, job_id, "retry", {"SCRIPT": "exit 1"})
    assert new.schedule == T0 + timedelta(seconds=30)
    old = _state(core, job_id)
    assert (old.state, old.reason) == ("failed", retried.note)
    with pytest.raises(IllegalTransition, match=f"job {retried.job_id} is scheduled; "
                                                "retry needs it failed or timed_out"), \
            core.db.session() as s:
        tx.retry(s, retried.job_id)


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


def test_a_stale_claim_goes_back_to_the_queue_through_a_running_daemon(
        mf_env: Env, core: Core, backend: str) -> None:
    """The daemon bounds how long a job may stay claimed but not started.

    PostgreSQL: a job another node claimed and never started (it hangs, or died without
    its lease running out yet) is put back in the queue by this daemon after
    claim_hold_seconds, and then run here. SQLite: a job this daemon claimed ahead behind
    a long job goes back to the queue after claim_hold_seconds too, and is not claimed
    ahead again while the long job holds the only slot (no claim-release churn); it runs
    once the slot frees."""
    core.ensure_schema()
    holder = _fake_template(core, "holder", FAKE_HOLD="1")
    waiting = _fake_template(core, "waiting")
    fast = {"MULTIFLEXI_MAX_PARALLEL": "1", "MULTIFLEXI_CLAIM_HOLD_SECONDS": "0.5",
            "MULTIFLEXI_HEARTBEAT_SECONDS": "0.2", "MULTIFLEXI_LEASE_SECONDS": "1"}

    async def on_postgresql(d: Any) -> None:
        def queue_and_claim(s: Session) -> int:  # in one transaction: nobody else sees it
            rt = s.get(RunTemplate, waiting)
            assert rt is not None
            job = create_job(s, core.transitions, rt, schedule_type="adhoc",
                             launched_by="t", after=datetime.now(UTC), box=core.box)
            assert core.transitions.claim(s, datetime.now(UTC), "ghost", 5) == [job.id]
            return job.id

        job_id = _in(core, queue_and_claim)
        assert (await d.job(job_id))["state"] == "claimed"
        done = await d.wait_state(job_id, "succeeded", within=15)
        assert done["node"] == d.daemon.settings.node and job_id in d.fake.runs
        with pytest.raises(IllegalTransition), core.db.session() as s:  # the ghost wakes
            core.transitions.start(s, job_id, "ghost", datetime.now(UTC))

    async def on_sqlite(d: Any) -> None:
        first = await d.call("runtemplate.run", id=holder)
        await d.fake.wait_started(first["id"])
        second = (await d.call("runtemplate.run", id=waiting))["id"]
        await d.wait_state(second, "claimed")  # claimed ahead, waiting for the slot
        back = await d.wait_state(second, "scheduled", within=5)
        assert back["node"] is None and back["begin"] is None
        for _ in range(15):  # and it stays in the queue while the slot is held
            await asyncio.sleep(0.1)
            assert (await d.job(second))["state"] == "scheduled"
        d.fake.release(first["id"])
        await d.wait_state(second, "succeeded")
        assert list(d.fake.runs) == [first["id"], second]

    async def scenario() -> None:
        async with daemon_in_process(mf_env, **fast) as d:
            await (on_postgresql(d) if backend == "postgresql" else on_sqlite(d))

    asyncio.run(scenario())


def test_each_job_gets_its_own_id_and_directory_from_its_templates_cached_launch(
        mf_env: Env, core: Core) -> None:
    """A template's environment and command are resolved once per version and reused
    for its jobs with no one-off values — each still gets its own MULTIFLEXI_JOB_ID and
    MULTIFLEXI_TMP; a value made from the job's id is resolved for every job; a one-off
    value and a changed configuration are seen by the next job."""
    core.ensure_schema()
    doc = shell_app("Tagged")
    doc["environment"]["RUN_TAG"] = {"type": "string", "description": "tag",
                                     "defval": "run-{MULTIFLEXI_JOB_ID}"}
    plain = _fake_template(core, "plain", FAKE_OUTPUT="x")
    tagged = make_template(core, app_doc=doc, name="tagged", config={"SCRIPT": "unused"})

    async def scenario() -> None:
        async with daemon_in_process(mf_env) as d:
            async def run(rt: int, **params: Any) -> dict[str, str]:
                job = await d.call("runtemplate.run", id=rt, **params)
                await d.wait_state(job["id"], "succeeded")
                env = d.fake.runs[job["id"]].spec.env
                assert env["MULTIFLEXI_JOB_ID"] == str(job["id"])
                assert env["MULTIFLEXI_TMP"].endswith(f"/{job['id']}")
                stored = (await d.job(job["id"]))["environment"]
                assert stored["MULTIFLEXI_JOB_ID"] == str(job["id"])
                return env

            first, second = await run(plain), await run(plain)
            assert first["MULTIFLEXI_TMP"] != second["MULTIFLEXI_TMP"]
            assert (await run(plain, env={"FAKE_OUTPUT": "y"}))["FAKE_OUTPUT"] == "y"
            await d.call("runtemplate.update", id=plain, config={"FAKE_OUTPUT": "z"})
            assert (await run(plain))["FAKE_OUTPUT"] == "z"
            for _ in range(2):
                env = await run(tagged)
                assert env["RUN_TAG"] == f"run-{env['MULTIFLEXI_JOB_ID']}"

    asyncio.run(scenario())
