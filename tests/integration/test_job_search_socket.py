"""Finding jobs through the socket, on SQLite and PostgreSQL: job.list's filters, sorts,
keyset pages and text search (the real handlers of the in-process daemon), a viewer of
one company who finds only its jobs, job.output read from the end and paged back, the
daemon.status pushed when it changes, and the CLI's job list through the daemon."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from multiflexi.errors import InvalidInput
from multiflexid.core import Core
from multiflexid.services import access, companies, lifecycle
from multiflexid.store.types import utcnow
from tests.conftest import Env
from tests.support.daemon import running_daemon
from tests.support.history import SECRET, T0, History, make_history
from tests.support.inproc import InProcess, daemon_in_process
from tests.support.peers import calls_as_nobody, public_socket


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def history(mf_env: Env, core: Core) -> History:
    return make_history(mf_env, core)


async def ids(d: InProcess, **params: Any) -> list[int]:
    return [j["id"] for j in (await d.call("job.list", **params))["items"]]


async def every_page(d: InProcess, **params: Any) -> list[int]:
    found: list[int] = []
    cursor = None
    for _ in range(20):
        page = await d.call("job.list", limit=2, cursor=cursor, **params)
        found += [j["id"] for j in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the cursor never ended")


def at(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def test_job_list_filters_sorts_and_pages(mf_env: Env, history: History) -> None:
    j1, j2, j3, j4, j5 = history.ran
    queued, cancelled = history.queued, history.cancelled
    acme, globex = history.companies["acme"], history.companies["globex"]
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({}, [cancelled, queued, j5, j4, j3, j2, j1]),
        ({"state": "failed"}, [j4, j2]),
        ({"state": ["failed", "cancelled"]}, [cancelled, j4, j2]),
        ({"company_id": globex}, [j5, j2]),
        ({"app_id": history.apps["Reporter"]}, [cancelled, j3]),
        ({"runtemplate_id": history.templates["acme-import"]}, [queued, j4, j1]),
        ({"since": at(1), "until": at(3)}, [j3, j2]),
        ({"time_field": "begin", "since": at(3)}, [j5, j4]),
        ({"time_field": "end", "until": at(2)}, [j2, j1]),
        ({"order": "asc"}, [j1, j2, j3, j4, j5, queued, cancelled]),
        ({"sort": "begin"}, [j5, j4, j3, j2, j1, cancelled, queued]),
        ({"sort": "end", "order": "asc"}, [j1, j2, j3, j4, j5, cancelled, queued]),
        ({"sort": "duration"}, [j3, j4, j5, j1, j2, cancelled, queued]),
        ({"sort": "duration", "order": "asc"}, [j2, j1, j5, j4, j3, queued, cancelled]),
        ({"company_id": acme, "state": ["succeeded", "failed"], "sort": "duration"},
         [j3, j4, j1]),
        ({"text": "invoice"}, [j5, j4, j1]),
        ({"text": "INVOICE", "company_id": acme}, [j4, j1]),
        ({"text": "invoice", "sort": "duration", "order": "asc"}, [j1, j5, j4]),
        ({"text": "ÚČETNÍ doklady"}, [j3]),
        ({"text": "error", "since": at(2)}, [j4]),
    ]

    async def scenario() -> None:
        async with daemon_in_process(mf_env) as d:
            for params, expected in cases:
                assert await ids(d, **params) == expected, params
                assert await every_page(d, **params) == expected, params
            # the first pages of ids, newest first, also say next_before_id
            page = await d.call("job.list", limit=3)
            assert page["next_before_id"] == j5
            assert await ids(d, before_id=j5) == [j4, j3, j2, j1]
            last = await d.call("job.list", before_id=j2)
            assert (last["next_cursor"], last["next_before_id"]) == (None, None)
            for params, field in (
                ({"text": "ab"}, "params.text"),
                ({"state": ["failed", "done"]}, "params.state[1]"),
                ({"sort": "name"}, "params.sort"),
                ({"cursor": "begin~desc~x~1", "sort": "begin"}, "params.cursor"),
                ({"before_id": 3, "sort": "end"}, "params.before_id"),
                ({"since": at(2), "until": at(1)}, "params.until"),
                ({"time_field": "due"}, "params.time_field"),
            ):
                with pytest.raises(InvalidInput) as refused:
                    await d.call("job.list", **params)
                assert refused.value.data["field"] == field, params

    run(scenario())


def test_text_search_finds_fresh_output_and_never_a_secret(mf_env: Env, core: Core,
                                                           history: History) -> None:
    async def scenario() -> None:
        async with daemon_in_process(mf_env) as d:
            page = await d.call("job.list", text="duplicate")
            assert [(j["id"], j["company"], j["match"]) for j in page["items"]] == [
                (history.ran[3], "acme",
                 {"seq": 2, "line": "ERROR: duplicate invoice FV-0004"})]
            for needle in (SECRET, SECRET.upper(), "SECRET-12"):
                assert await ids(d, text=needle) == [], needle
            # printed a moment ago: found at once (PostgreSQL's index is written with the
            # row; SQLite scans what its indexer has not reached)
            job = await d.call("runtemplate.run", id=history.templates["acme-report"],
                               env={"FAKE_OUTPUT": "fresh line QX-4471\\nand secret "
                                                   f"{SECRET} again"})
            await d.wait_state(job["id"], "succeeded")
            assert await ids(d, text="qx-4471") == [job["id"]]
            assert await ids(d, text=SECRET) == []
            assert (await d.call("job.list", text="and secret"))["items"][0]["match"] == {
                "seq": 2, "line": "and secret ******** again"}
            # the daemon's indexer catches up by itself (the status says how far it is),
            # and the index finds the same
            for _ in range(300):
                status = await d.call("daemon.status")  # (read every 2 s)
                if d.daemon.indexer.rows and not status["search"]["behind"]:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the indexer did not catch up in 30 s")
            assert d.daemon.indexer.rows > 0
            assert await ids(d, text="qx-4471") == [job["id"]]
            assert await ids(d, text=SECRET) == []

    run(scenario())


def _many_chunks(core: Core, job_id: int, n: int) -> list[str]:
    """``n`` chunks of output of a job (two lines each, stdout and stderr by turns)."""
    data = [f"line {2 * i} {'x' * 100}\nline {2 * i + 1}\n" for i in range(n)]
    rows = [{"job_id": job_id, "seq": 1000 + i, "stream": "stderr" if i % 3 == 0 else "stdout",
             "at": utcnow(), "data": text.encode()} for i, text in enumerate(data)]
    with core.db.session() as s:
        lifecycle.write_output(s, rows, {job_id: (sum(len(r["data"]) for r in rows), 0)})
    return data


def test_output_from_the_end_and_paged_back(mf_env: Env, core: Core,
                                            history: History) -> None:
    job = history.ran[2]
    written = _many_chunks(core, job, 600)

    async def scenario() -> None:
        async with daemon_in_process(mf_env) as d:
            whole = "".join(c["data"] for c in (await d.call(
                "job.output", id=job, limit=10000))["chunks"])
            tail = await d.call("job.output", id=job, tail=True, max_bytes=4000)
            chunks = tail["chunks"]
            assert 1 <= len(chunks) and sum(len(c["data"]) for c in chunks) <= 4000
            assert chunks[-1]["data"] == written[-1]  # the very end
            assert (tail["last_seq"], tail["first_seq"]) == (1599, chunks[0]["seq"])
            assert tail["more_before"] is True and tail["done"] is True
            back, before = chunks, tail["first_seq"]
            while True:  # page back to the start
                page = await d.call("job.output", id=job, before_seq=before, limit=97)
                assert page["chunks"] and page["chunks"][-1]["seq"] == before - 1
                back = page["chunks"] + back
                before = page["first_seq"]
                if not page["more_before"]:
                    break
            assert "".join(c["data"] for c in back) == whole
            assert back[0]["seq"] == 1 and [c["seq"] for c in back] == sorted(
                c["seq"] for c in back)
            # one stream (with MultiFlexi's own lines), from the end
            err = await d.call("job.output", id=job, tail=True, stream="stderr", limit=5)
            assert {c["stream"] for c in err["chunks"]} <= {"stderr", "system"}
            assert err["chunks"][-1]["data"] == written[-3]
            with pytest.raises(InvalidInput, match="at most one of after_seq, before_seq"):
                await d.call("job.output", id=job, tail=True, after_seq=3)
            none = await d.call("job.output", id=history.queued, tail=True)
            assert (none["chunks"], none["more_before"], none["done"]) == ([], False, False)

    run(scenario())


class Engine:
    """A container engine whose reachability the test decides (its API cannot run here)."""

    def __init__(self) -> None:
        self.problem: str | None = None

    async def check(self) -> str | None:
        return self.problem


def test_status_is_pushed_when_it_changes(mf_env: Env, core: Core,
                                          history: History) -> None:
    engine = Engine()

    async def pushed(d: InProcess, want: Any) -> dict[str, Any]:
        seen = []
        try:
            async with asyncio.timeout(15):
                while True:
                    method, params = await d.events.get()
                    if method == "daemon.status":
                        seen.append(params)
                        if want(params):
                            return params
        except TimeoutError:
            raise AssertionError(f"not pushed; pushed were {seen}") from None

    async def scenario() -> None:
        async with daemon_in_process(mf_env, engines={"Podman": engine}) as d:
            d.daemon.status_watch.engine_interval = 0.2  # (30 s in a daemon)
            d.daemon.status_watch.wake.set()
            reply = await d.call("events.subscribe", status=True)
            assert reply["subscribed"] == ["status"]  # with the status now (the baseline)
            assert reply["status"]["running"] == 0 and "access" in reply["status"]
            first = await d.call("daemon.status")
            while first["engines"]["Podman"]["reachable"] is None:  # (checked at start)
                await asyncio.sleep(0.05)
                first = await d.call("daemon.status")
            assert first["engines"] == {"Podman": {"reachable": True, "problem": None}}
            # a job runs: the running count changes, pushed with who asks and their roles
            job = await d.call("runtemplate.run", id=history.templates["acme-import"],
                               env={"FAKE_HOLD": "1"})
            await d.fake.wait_started(job["id"])
            busy = await pushed(d, lambda p: p["running"] == 1)
            assert busy["running_jobs"] == [job["id"]]
            assert busy["user"] == first["user"] and busy["access"] == first["access"]
            d.fake.release(job["id"])
            await pushed(d, lambda p: p["running"] == 0)
            # an engine stops answering, and answers again
            engine.problem = "the Podman API at unix:///run/podman.sock did not answer"
            down = await pushed(d, lambda p: not p["engines"]["Podman"]["reachable"])
            assert down["engines"]["Podman"]["problem"] == engine.problem
            engine.problem = None
            await pushed(d, lambda p: p["engines"]["Podman"]["reachable"])
            # a component fails and recovers (what the scheduler, the writer... report
            # when the database is out; no loop of the daemon clears this one by itself)
            d.daemon.health.failed("probe", RuntimeError("boom"))
            degraded = await pushed(d, lambda p: p["degraded"])
            assert "degraded: probe: RuntimeError: boom" in degraded["status"]
            d.daemon.health.ok("probe")
            await pushed(d, lambda p: not p["degraded"])
            # nothing pushed once unsubscribed
            await d.call("events.unsubscribe", status=True)
            d.daemon.health.failed("probe", RuntimeError("boom"))
            d.daemon.status_watch.changed()
            await asyncio.sleep(1.0)
            while not d.events.empty():
                assert d.events.get_nowait()[0] != "daemon.status"

    run(scenario())


def test_the_cli_lists_through_the_daemon(mf_env: Env, core: Core, history: History,
                                          mfcli: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With the daemon running `job list` asks it; the CLI's own database URL is wrong
    here, so an answer can only have come through the socket."""
    j1, _j2, j3, j4, j5 = history.ran
    with running_daemon(mf_env.vars(), tmp_path):
        monkeypatch.setenv("MULTIFLEXI_DATABASE_URL", "postgresql+psycopg://nobody@/none"
                                                      "?host=/nonexistent")
        for args, expected in (
            (("--grep", "invoice"), [j5, j4, j1]),
            (("--grep", "invoice", "--company", "acme", "--state", "failed"), [j4]),
            (("--company", "acme", "--sort", "duration", "--state", "succeeded",
              "--state", "failed"), [j3, j4, j1]),
            (("--since", at(2), "--until", at(4), "--time", "begin"), [j4, j3]),
            (("--app", str(history.apps["Reporter"]), "--order", "asc"),
             [j3, history.cancelled]),
        ):
            r = mfcli("job", "list", "--format", "json", *args)
            assert r.code == 0, r.err
            assert [j["id"] for j in r.json] == expected, args
        r = mfcli("job", "list", "--grep", "duplicate", "--limit", "1")
        assert r.code == 0, r.err
        assert r.out.splitlines()[1].endswith("ERROR: duplicate invoice FV-0004")
        r = mfcli("job", "list", "--format", "json", "--limit", "2", "--sort", "begin")
        assert [j["id"] for j in r.json] == [j5, j4]
        assert r.err.startswith("more: --cursor begin~desc~")
        cursor = r.err.split()[-1]
        r = mfcli("job", "list", "--format", "json", "--sort", "begin", "--cursor", cursor)
        assert [j["id"] for j in r.json] == [j3, history.ran[1], j1, history.cancelled,
                                             history.queued]


@pytest.fixture
def nobody_env(mf_env: Env) -> Iterator[Env]:
    with public_socket(mf_env) as env:
        yield env


@pytest.mark.root_only
def test_a_viewer_of_one_company_finds_only_its_jobs(nobody_env: Env, core: Core) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (switches to uid 65534); make test leaves it out otherwise")
    history = make_history(nobody_env, core)
    j1, j2, _j3, j4, j5 = history.ran
    acme, globex = history.companies["acme"], history.companies["globex"]
    with core.db.session() as s:
        access.grant(s, "nogroup", "viewer", companies.get_company(s, acme), utcnow(), "test")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("job.list", {"text": "invoice"}),
        ("job.list", {"text": "error"}),
        ("job.list", {"company_id": globex}),
        ("job.list", {"sort": "duration", "state": ["succeeded", "failed"]}),
        ("job.output", {"id": j5, "tail": True}),
        ("job.output", {"id": j4, "tail": True}),
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with daemon_in_process(nobody_env):
            return await asyncio.to_thread(calls_as_nobody, nobody_env.socket, calls)

    got = run(scenario())
    listed = [[j["id"] for j in g["result"]["items"]] for g in got[:4]]
    assert listed == [[j4, j1], [j4], [], [history.ran[2], j4, j1]]
    assert j2 not in listed[1] and j5 not in listed[0]
    assert got[4]["error"].startswith("forbidden: job.output needs role viewer on company")
    assert got[5]["result"]["chunks"][-1]["data"].startswith("ERROR: duplicate invoice")


def test_output_read_holds_every_line_already_pushed(mf_env: Env, core: Core,
                                                     history: History) -> None:
    """A client subscribes to a running job's output, then reads what is stored: every
    line printed before its subscription must be in that read (it will not be pushed).
    The daemon hands output to its writer to share a commit (lazily, for up to its
    linger); a read must wait for such a write, not only for what is still pending. (The
    TUI showed a running job without its first line.)"""
    async def scenario() -> None:
        async with daemon_in_process(mf_env) as d:
            d.daemon.db.linger = 3.0  # (a long shared commit: the window made wide)
            hub = d.daemon.hub
            job = await d.call("runtemplate.run", id=history.templates["acme-report"],
                               env={"FAKE_OUTPUT": "first-line", "FAKE_SECONDS": "6"})
            async with asyncio.timeout(10):  # printed and handed to the writer
                while hub.pending or not hub._unwritten:  # noqa: ASYNC110 (state, no event)
                    await asyncio.sleep(0.005)
            page = await d.call("job.output", id=job["id"])
            assert [c["data"] for c in page["chunks"]] == ["first-line"]
            await d.call("job.cancel", id=job["id"])

    run(scenario())
