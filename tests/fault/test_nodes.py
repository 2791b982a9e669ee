"""Several nodes on one PostgreSQL: dead nodes, exactly-once, no overlap across nodes.

Run with ``-m fault``; they print their figures (``-s`` shows them, CI logs keep them).
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from multiflexid.core import Core
from multiflexid.services.jobs import create_job
from multiflexid.store.orm import Job, RunTemplate
from tests.fault.conftest import Nodes
from tests.support.factory import make_template

pytestmark = pytest.mark.fault


def _states(core: Core) -> collections.Counter[str]:
    with core.db.read_session() as s:
        return collections.Counter(dict(s.execute(
            select(Job.state, func.count()).group_by(Job.state)).all()))


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill9_of_a_node_during_20_running_jobs(pg_core: Core, nodes: Nodes,
                                                figures: Callable[[str], None]) -> None:
    ids = []
    a = nodes.start("node-a", MULTIFLEXI_MAX_PARALLEL="10")
    b = nodes.start("node-b", MULTIFLEXI_MAX_PARALLEL="10")
    for i in range(20):
        rt = make_template(pg_core, name=f"long{i}", config={"SCRIPT": "sleep 60"})
        ids.append(a.call("runtemplate.run", id=rt)["id"])
    _wait(lambda: _states(pg_core)["running"] == 20, 60, "20 running jobs")
    with pg_core.db.read_session() as s:
        on_a = set(s.scalars(select(Job.id).where(Job.node == "node-a",
                                                  Job.state == "running")))
        on_b = set(s.scalars(select(Job.id).where(Job.node == "node-b",
                                                  Job.state == "running")))
    assert on_a and on_b and len(on_a) + len(on_b) == 20
    started = time.monotonic()
    a.kill9()
    _wait(lambda: _states(pg_core)["lost"] == len(on_a), 30, "node-b to mark node-a's jobs lost")
    noticed = time.monotonic() - started
    with pg_core.db.read_session() as s:
        lost = {j.id: j for j in s.scalars(select(Job).where(Job.state == "lost"))}
        still = set(s.scalars(select(Job.id).where(Job.state == "running")))
    assert set(lost) == on_a
    assert all("node node-a stopped renewing its lease" in (j.reason or "")
               and "marked lost by node-b" in (j.reason or "") for j in lost.values())
    assert still == on_b  # node-b's own jobs are untouched
    figures(f"kill -9 of node-a: {len(on_a)} of its jobs marked lost by node-b after "
          f"{noticed:.1f} s (lease 3 s); node-b still runs {len(on_b)}")
    for job_id in on_b:
        b.call("job.cancel", id=job_id)


def test_three_nodes_thousands_of_jobs_one_killed(pg_core: Core, nodes: Nodes,
                                                  tmp_path: Path,
                                                  figures: Callable[[str], None]) -> None:
    ledger = tmp_path / "ran.log"  # every job appends its id: a duplicate shows twice
    templates = [make_template(pg_core, name=f"t{i}", config={
        "SCRIPT": f"echo $MULTIFLEXI_JOB_ID >> {ledger}"}) for i in range(100)]
    total = 2000
    with pg_core.db.session() as s:
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        for n in range(total):
            rt = s.get(RunTemplate, templates[n % len(templates)])
            assert rt is not None
            create_job(s, pg_core.transitions, rt, schedule_type="adhoc",
                       launched_by="fault-test", after=now, box=pg_core.box)
    started = time.monotonic()
    for name in ("n1", "n2", "n3"):
        nodes.start(name, MULTIFLEXI_MAX_PARALLEL="4")
    _wait(lambda: _states(pg_core)["succeeded"] >= total // 3, 120, "a third of the jobs")
    nodes.procs["n2"].kill9()
    killed_at = _states(pg_core)["succeeded"]

    def settled() -> bool:
        st = _states(pg_core)
        return st["succeeded"] + st["lost"] + st["failed"] == total

    _wait(settled, 300, "every job to end or be marked lost")
    elapsed = time.monotonic() - started
    ran = collections.Counter(int(x) for x in ledger.read_text().split())
    duplicates = {job_id: n for job_id, n in ran.items() if n > 1}
    st = _states(pg_core)
    with pg_core.db.read_session() as s:
        succeeded = set(s.scalars(select(Job.id).where(Job.state == "succeeded")))
        lost = set(s.scalars(select(Job.id).where(Job.state == "lost")))
        per_node = collections.Counter(dict(s.execute(
            select(Job.node, func.count()).group_by(Job.node)).all()))
    figures(f"3 nodes, {total} jobs, n2 killed after {killed_at} succeeded: "
          f"ran {len(ran)} (succeeded {len(succeeded)}), duplicates {len(duplicates)}, "
          f"lost {len(lost)}, failed {st['failed']}, by node {dict(per_node)}, "
          f"{elapsed:.1f} s")
    assert duplicates == {}
    assert st["failed"] == 0
    assert succeeded <= set(ran)  # every success really ran (exactly once: no duplicates)
    assert set(ran) - succeeded <= lost  # what ran but is not a success is marked lost
    # At most what n2 was running (4): what it had claimed and not started went back to
    # the queue (its start is on record before a launch) and ran elsewhere.
    assert len(lost) <= 4


def _queue_at_once(core: Core, rt_ids: list[int]) -> list[int]:
    """Jobs queued straight into the database in one transaction: every node is told at
    the same moment (NOTIFY at commit)."""
    from datetime import UTC, datetime

    with core.db.session() as s:
        return [create_job(s, core.transitions, s.get(RunTemplate, rt), schedule_type="adhoc",
                           launched_by="t", after=datetime.now(UTC), box=core.box).id
                for rt in rt_ids]


def test_two_nodes_run_four_long_jobs_at_once(pg_core: Core, nodes: Nodes) -> None:
    """No hoarding: with two nodes at max_parallel = 2 and four long jobs queued, all four
    run at once, two on each node; no node holds a job it cannot start. (Claims are not
    released for a minute here: a node that hoarded would keep its two extra jobs.)"""
    for name in ("a", "b"):
        nodes.start(name, MULTIFLEXI_MAX_PARALLEL="2", MULTIFLEXI_CLAIM_HOLD_SECONDS="60")
    time.sleep(1)  # both listening
    rts = [make_template(pg_core, name=f"long{i}", config={"SCRIPT": "sleep 30"})
           for i in range(4)]
    ids = _queue_at_once(pg_core, rts)
    _wait(lambda: _states(pg_core)["running"] == 4, 20, "four jobs running at once")
    with pg_core.db.read_session() as s:
        per_node = collections.Counter(s.scalars(select(Job.node).where(Job.id.in_(ids))))
    assert per_node == {"a": 2, "b": 2}
    for job_id in ids:
        nodes.procs["a"].call("job.cancel", id=job_id)


def test_a_dead_nodes_claimed_jobs_run_elsewhere_its_running_ones_are_lost(
        pg_core: Core, nodes: Nodes) -> None:
    """A node died after claiming two jobs and starting one: the one it started is lost
    (its result is unknown); the one it never started goes back to the queue and runs on
    the surviving node."""
    from datetime import UTC, datetime, timedelta

    from multiflexid.services import nodes as node_svc
    from multiflexid.store.orm import Node

    started_rt = make_template(pg_core, name="was-started", config={"SCRIPT": "sleep 60"})
    claimed_rt = make_template(pg_core, name="only-claimed", config={"SCRIPT": "echo ran"})
    running_id, claimed_id = _queue_at_once(pg_core, [started_rt, claimed_rt])
    now = datetime.now(UTC)
    tx = pg_core.transitions
    with pg_core.db.session() as s:  # what a node that died a moment ago left behind
        node_svc.register(s, "ghost", pid=1, version="0", now=now, lease=3)
        s.flush()
        ghost = s.get(Node, "ghost")
        assert ghost is not None
        ghost.host, ghost.lease_until = "elsewhere", now - timedelta(seconds=5)
        assert sorted(tx.claim(s, now, "ghost", 5)) == sorted([running_id, claimed_id])
        tx.start(s, running_id, "ghost", now)
    survivor = nodes.start("survivor")
    done = survivor.wait_job(claimed_id, timeout=60)
    assert (done["state"], done["node"]) == ("succeeded", "survivor")
    lost = survivor.wait_job(running_id, timeout=30)
    assert lost["state"] == "lost"
    assert "node ghost stopped renewing its lease" in lost["reason"]
    assert "marked lost by survivor" in lost["reason"]


def test_no_overlap_of_one_template_across_nodes(pg_core: Core, nodes: Nodes) -> None:
    rt = make_template(pg_core, name="serial", config={"SCRIPT": "sleep 0.3"})
    a = nodes.start("a")
    nodes.start("b")
    ids = [a.call("runtemplate.run", id=rt)["id"] for _ in range(12)]
    for job_id in ids:
        a.wait_job(job_id, timeout=60)
    with pg_core.db.read_session() as s:
        jobs = list(s.scalars(select(Job).where(Job.id.in_(ids)).order_by(Job.begin)))
    assert {j.state for j in jobs} == {"succeeded"}
    assert len({j.node for j in jobs}) == 2  # both nodes took some
    for before, after in itertools.pairwise(jobs):
        assert before.end is not None and after.begin is not None
        assert after.begin >= before.end  # never two at once, whichever node


def test_waiting_node_wakes_on_notify(pg_core: Core, nodes: Nodes) -> None:
    """A job queued straight into the database (CLI without the daemon's socket) is
    started at once by the idle node that was LISTENing, not at its next poll."""
    rt_id = make_template(pg_core, name="quick", config={"SCRIPT": "true"})
    d = nodes.start("listener", MULTIFLEXI_POLL_SECONDS="60")
    time.sleep(1)
    from datetime import UTC, datetime

    with pg_core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        job_id = create_job(s, pg_core.transitions, rt, schedule_type="adhoc-cli",
                            launched_by="t", after=datetime.now(UTC), box=pg_core.box).id
    job = d.wait_job(job_id, timeout=20)  # well before the 60 s poll
    assert job["state"] == "succeeded"


def test_second_daemon_with_the_same_node_name_refuses(pg_core: Core, nodes: Nodes) -> None:
    nodes.start("twin")
    from tests.support.daemon import DaemonProcess

    env = {**nodes.env.vars(), "MULTIFLEXI_NODE": "twin",
           "MULTIFLEXI_SOCKET": str(nodes.tmp / "twin2.sock")}
    second = DaemonProcess(env, nodes.tmp).start(wait=False)
    assert second.proc is not None and second.proc.wait(30) == 1
    assert "node name 'twin' is held by a running multiflexid" in second.log()
