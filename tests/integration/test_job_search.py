"""`job list` filtered, sorted, searched and paged by the database, on SQLite and
PostgreSQL (the socket's job.list is the same service: tests/integration/
test_job_search_socket.py), and the text index kept in step with the output."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text

from multiflexid.core import Core
from multiflexid.store import search_pg, search_sqlite, textmatch
from multiflexid.store.orm import Job, JobOutput
from multiflexid.store.search import OutputSearch
from multiflexid.store.types import utcnow
from tests.conftest import Env
from tests.support.history import SECRET, T0, History, make_history


@pytest.fixture
def history(mf_env: Env, core: Core) -> History:
    return make_history(mf_env, core)


def listed(mfcli: Any, *args: str) -> list[int]:
    r = mfcli("job", "list", "--format", "json", *args)
    assert r.code == 0, r.err
    return [j["id"] for j in r.json]


def every_page(mfcli: Any, *args: str) -> list[int]:
    """All pages of a listing, two jobs at a time, following the cursor it prints."""
    ids: list[int] = []
    cursor: list[str] = []
    for _ in range(20):
        r = mfcli("job", "list", "--format", "json", "--limit", "2", *args, *cursor)
        assert r.code == 0, r.err
        ids += [j["id"] for j in r.json]
        more = re.search(r"^more: --cursor (\S+)$", r.err, re.M)
        if more is None:
            return ids
        cursor = ["--cursor", more.group(1)]
    raise AssertionError("the cursor never ended")


def iso(hours: float) -> str:
    return (T0 + timedelta(hours=hours)).isoformat()


def test_filters(mfcli: Any, history: History) -> None:
    j1, j2, j3, j4, j5 = history.ran
    queued, cancelled = history.queued, history.cancelled
    assert listed(mfcli) == [cancelled, queued, j5, j4, j3, j2, j1]
    assert listed(mfcli, "--state", "failed") == [j4, j2]
    assert listed(mfcli, "--state", "failed", "--state", "cancelled") == [cancelled, j4, j2]
    assert listed(mfcli, "--company", "acme") == [cancelled, queued, j4, j3, j1]
    assert listed(mfcli, "--company", str(history.companies["globex"])) == [j5, j2]
    assert listed(mfcli, "--app", str(history.apps["Reporter"])) == [cancelled, j3]
    assert listed(mfcli, "--runtemplate", str(history.templates["globex-import"])) == [j5, j2]
    # time ranges: since <= t < until, on created (default), begin or end
    assert listed(mfcli, "--since", iso(1), "--until", iso(3)) == [j3, j2]
    assert listed(mfcli, "--since", iso(5)) == [cancelled, queued]
    assert listed(mfcli, "--time", "begin", "--since", iso(3)) == [j5, j4]
    assert listed(mfcli, "--time", "end", "--until", iso(2)) == [j2, j1]
    assert listed(mfcli, "--time", "end", "--since", iso(4)) == [cancelled, j5]
    # all of them at once
    assert listed(mfcli, "--company", "acme", "--state", "succeeded", "--state", "failed",
                  "--since", iso(1)) == [j4, j3]
    assert listed(mfcli, "--until", "2024-05-01") == []  # a date: its midnight UTC


def test_sorts_either_way_with_the_unsorted_last(mfcli: Any, history: History) -> None:
    j1, j2, j3, j4, j5 = history.ran
    queued, cancelled = history.queued, history.cancelled
    assert listed(mfcli, "--order", "asc") == [j1, j2, j3, j4, j5, queued, cancelled]
    assert listed(mfcli, "--sort", "begin") == [j5, j4, j3, j2, j1, cancelled, queued]
    assert listed(mfcli, "--sort", "begin", "--order", "asc") == [j1, j2, j3, j4, j5, queued,
                                                                  cancelled]
    # the cancelled job ended (when it was cancelled) without beginning
    assert listed(mfcli, "--sort", "end") == [cancelled, j5, j4, j3, j2, j1, queued]
    # durations 30, 5, 120, 60, 30 s: a tie is ordered by id
    assert listed(mfcli, "--sort", "duration") == [j3, j4, j5, j1, j2, cancelled, queued]
    assert listed(mfcli, "--sort", "duration", "--order", "asc") == [j2, j1, j5, j4, j3,
                                                                     queued, cancelled]


@pytest.mark.parametrize("args", [
    (), ("--order", "asc"), ("--sort", "begin"), ("--sort", "end", "--order", "asc"),
    ("--sort", "duration"), ("--sort", "duration", "--order", "asc"),
    ("--company", "acme", "--sort", "duration"), ("--state", "succeeded", "--sort", "end"),
    ("--grep", "invoice"), ("--grep", "invoice", "--sort", "duration", "--order", "asc"),
    ("--grep", "voice", "--since", "2024-01-01", "--sort", "begin"),
])
def test_pages_follow_the_cursor_with_filters(mfcli: Any, history: History,
                                              args: tuple[str, ...]) -> None:
    whole = listed(mfcli, "--limit", "100", *args)
    assert len(whole) >= 3
    assert every_page(mfcli, *args) == whole


def test_text_search(mfcli: Any, history: History) -> None:
    j1, j2, j3, j4, j5 = history.ran
    assert listed(mfcli, "--grep", "invoice") == [j5, j4, j1]
    assert listed(mfcli, "--grep", "INVOICE FV") == [j5, j4, j1]  # any case
    assert listed(mfcli, "--grep", "účetní doklady") == [j3]  # non-ASCII letters too
    assert listed(mfcli, "--grep", "ÚČETNÍ") == [j3]
    assert listed(mfcli, "--grep", "error:") == [j4, j2]
    assert listed(mfcli, "--grep", "invoice", "--company", "acme") == [j4, j1]
    assert listed(mfcli, "--grep", "invoice", "--state", "succeeded") == [j5, j1]
    assert listed(mfcli, "--grep", "invoice", "--sort", "duration") == [j4, j5, j1]
    assert listed(mfcli, "--grep", "100%") == []  # LIKE's wildcards are plain text
    assert listed(mfcli, "--grep", "r_y") == []
    assert listed(mfcli, "--grep", "no such text") == []
    # what matched: the first line holding it
    rows = mfcli("job", "list", "--format", "json", "--grep", "duplicate").json
    assert [(r["id"], r["match"]) for r in rows] == [
        (j4, {"seq": 2, "line": "ERROR: duplicate invoice FV-0004"})]
    out = mfcli("job", "list", "--grep", "refused").out.splitlines()
    assert out[0].split()[-1] == "MATCH"
    assert out[1].endswith("ERROR: connection refused by abraflexi.example")


def test_a_secret_is_never_found(mfcli: Any, history: History) -> None:
    """Output is masked before it is stored: the index never saw the secret."""
    j5 = history.ran[4]
    for needle in (SECRET, SECRET.lower(), SECRET[:6], "SECRET-1"):
        assert listed(mfcli, "--grep", needle) == [], needle
    rows = mfcli("job", "list", "--format", "json", "--grep", "using token").json
    assert [(r["id"], r["match"]["line"]) for r in rows] == [(j5, "using token ********")]


def test_refusals_name_the_option(mfcli: Any, history: History) -> None:
    for args, message in (
        (("--until", iso(1), "--since", iso(2)), "--until: must be later than since"),
        (("--cursor", "nonsense"), "--cursor: 'nonsense' is not a cursor of a job.list "
                                   "page sorted by id desc"),
        (("--sort", "begin", "--cursor", "id~desc~~4"),
         "--cursor: 'id~desc~~4' is not a cursor of a job.list page sorted by begin desc"),
        (("--sort", "begin", "--before", "4"), "--before: only with --sort id --order desc"),
        (("--since", "yesterday"), "--since: 'yesterday' is not an ISO 8601 time"),
        (("--grep", "two\nlines"), "--grep: one line only"),
        (("--grep", "ab"), "--grep: at least 3 characters are needed (the index holds "
                           "trigrams)"),
    ):
        r = mfcli("job", "list", *args)
        assert r.code == 1, args
        assert r.err.startswith(f"multiflexi-cli: error: {message}"), (args, r.err)


# --- the index and the output ---------------------------------------------------------------


def _reindex(core: Core) -> None:
    """What the daemon's indexer does, until nothing is left."""
    index = OutputSearch(core.db.dialect)
    while True:
        with core.db.session() as s:
            if index.index_some(s, 1024) == (0, 0):
                return


def _print(core: Core, job_id: int, line: str) -> None:
    """Output of a job written as the daemon writes it (and noted for the indexer)."""
    from multiflexid.services import lifecycle

    with core.db.session() as s:
        seq = (s.scalar(select(JobOutput.seq).where(JobOutput.job_id == job_id)
                        .order_by(JobOutput.seq.desc())) or 0) + 1
        data = f"{line}\n".encode()
        lifecycle.write_output(s, [{"job_id": job_id, "seq": seq, "stream": "stdout",
                                    "at": utcnow(), "data": data}], {job_id: (len(data), 0)})


def test_indexed_or_not_the_same_jobs_are_found(mfcli: Any, core: Core,
                                                history: History) -> None:
    """Output the indexer has not reached is scanned; once indexed, the index finds the
    same."""
    j1, j2, _j3, j4, j5 = history.ran
    _print(core, j2, "late line: invoice FV-0002 resent")  # no daemon: not indexed
    searches = [("--grep", "invoice"), ("--grep", "error", "--sort", "begin"),
                ("--grep", "účetní"), ("--grep", "invoice", "--limit", "1"),
                ("--grep", "FV-0002 resent"), ("--grep", "resent", "--sort", "duration")]
    with core.db.read_session() as s:
        assert OutputSearch(core.db.dialect).status(s)["behind"] >= 1
    before = [listed(mfcli, *args) for args in searches]
    assert before[0] == [j5, j4, j2, j1] and before[4] == [j2]
    _reindex(core)
    with core.db.read_session() as s:
        assert OutputSearch(core.db.dialect).status(s) == {
            "index": "fts5 trigram" if core.db.is_sqlite else "pg_trgm", "behind": 0}
    assert [listed(mfcli, *args) for args in searches] == before
    rows = mfcli("job", "list", "--format", "json", "--grep", "RESENT").json
    assert [(r["id"], r["match"]["line"]) for r in rows] == [
        (j2, "late line: invoice FV-0002 resent")]


def test_deleted_output_leaves_the_index(core: Core, history: History) -> None:
    """(SQLite) A job's deletion takes its output out of the FTS index; a row written
    below the indexer's mark is indexed at once."""
    if not core.db.is_sqlite:
        return  # PostgreSQL's index is the database's own
    _reindex(core)
    j1 = history.ran[0]
    fts = search_sqlite.TABLE
    match = text(f"SELECT rowid >> {search_sqlite.SEQ_BITS} FROM {fts} WHERE {fts} MATCH :q")
    with core.db.session() as s:
        assert set(s.scalars(match, {"q": textmatch.fts_query("FV-0001")})) == {j1}
        s.execute(delete(Job).where(Job.id == j1))  # the output goes with it (cascade)
    with core.db.session() as s:
        assert list(s.scalars(match, {"q": textmatch.fts_query("FV-0001")})) == []
        assert s.scalar(select(JobOutput.seq).where(JobOutput.job_id == j1)) is None
        # the newest rows deleted, a new row may get a rowid the indexer passed
        newest = max(history.ran)
        s.execute(text("UPDATE job_output_search_mark SET mark = mark + 1000"))
        s.execute(insert(JobOutput).values(job_id=newest, seq=99, stream="stdout",
                                           at=utcnow(), data=b"a late line FV-9999\n"))
    with core.db.read_session() as s:
        assert list(s.scalars(match, {"q": textmatch.fts_query("late line")})) == [newest]


def test_status_says_how_output_is_searched(mfcli: Any, core: Core, history: History,
                                            backend: str) -> None:
    index = "fts5 trigram" if backend == "sqlite" else "pg_trgm"
    _print(core, history.ran[0], "one more line")  # no daemon: not indexed
    doc = mfcli("status", "--format", "json").json["search"]
    assert doc["index"] == index and doc["behind"] >= 1
    assert re.search(rf"^search +{index} index, {doc['behind']} output chunk\(s\) not "
                     r"indexed yet \(the daemon indexes them in the background; searches "
                     r"scan them\)$", mfcli("status").out, re.M)
    _reindex(core)
    assert mfcli("status", "--format", "json").json["search"]["behind"] == 0
    assert re.search(rf"^search +{index} index, all output indexed$", mfcli("status").out,
                     re.M)


def test_without_pg_trgm_search_scans_and_says_so(
        pg_cluster: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """A database whose owner may not create extensions: the upgrade goes on without the
    index, searches still find (scanning), status and `db upgrade` say why and how to fix
    it; once allowed, `db upgrade` makes the index."""
    from sqlalchemy.engine import make_url

    from multiflexi.settings import load_settings
    from multiflexid.services import lifecycle
    from multiflexid.store.db import Database
    from tests.support.cli import run_cli
    from tests.support.factory import make_template

    role = name = f"lim{os.getpid()}_{tmp_path.name[-12:].replace('-', '_')}".lower()
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN")
    pg_cluster.psql(f"CREATE DATABASE {name} OWNER {role}")
    pg_cluster.psql(f"REVOKE CREATE ON DATABASE {name} FROM {role}, PUBLIC")
    url = make_url(pg_cluster.url(name)).set(username=role).render_as_string(False)
    env = Env(tmp_path / "data", url, tmp_path / "mf.sock")
    env.data_dir.mkdir()
    for key, value in env.vars().items():
        monkeypatch.setenv(key, value)
    db = Database(url)
    db.upgrade()
    db.dispose()
    core = Core(load_settings())
    rt = make_template(core, config={"SCRIPT": "unused"})
    with core.db.session() as s:
        job = jobs_of(core, s, rt)
        lifecycle.write_output(s, [{"job_id": job, "seq": 1, "stream": "stdout",
                                    "at": T0, "data": b"Invoice FV-77 sent\n"}], {job: (19, 0)})
    core.close()

    def cli(*args: str) -> Any:
        return run_cli(capsys, *args)

    assert [j["id"] for j in cli("job", "list", "--grep", "fv-77", "--format", "json").json
            ] == [job]
    doc = cli("status", "--format", "json").json["search"]
    assert doc["index"] is None
    assert "the pg_trgm extension is missing" in doc["warning"]
    assert re.search(r"^search +NOT INDEXED: text search is not indexed \(the pg_trgm",
                     cli("status").out, re.M)
    r = cli("db", "upgrade")
    assert r.code == 0 and r.out.endswith(f": already at {Database.head_revision()}\n")
    assert r.err.startswith("multiflexi-cli: warning: the pg_trgm extension could not be "
                            "created (permission denied to create extension")
    assert "then multiflexi-cli db upgrade" in r.err
    pg_cluster.psql(f"GRANT CREATE ON DATABASE {name} TO {role}")
    r = cli("db", "upgrade", "--format", "json")
    assert (r.code, r.json["search_index"], r.err) == (0, "created", "")
    assert cli("status", "--format", "json").json["search"] == {"index": "pg_trgm",
                                                                "behind": 1}
    assert [j["id"] for j in cli("job", "list", "--grep", "FV-77", "--format", "json").json
            ] == [job]


def jobs_of(core: Core, s: Any, rt_id: int) -> int:
    from multiflexid.services import jobs, runtemplates

    job = jobs.create_job(s, core.transitions, runtemplates.get_runtemplate(s, rt_id),
                          schedule_type="adhoc-cli", launched_by="test", after=T0, box=core.box)
    s.flush()
    return int(job.id)


def test_postgresql_scans_output_in_parallel_too(core: Core, history: History,
                                                 backend: str) -> None:
    """Without the index PostgreSQL may scan output with parallel workers: the text
    function (which catches invalid UTF-8 in a subtransaction) must not run in them."""
    if backend != "postgresql":
        return
    with core.db.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {search_pg.INDEX}")
        for setting in ("force_parallel_mode = on", "parallel_setup_cost = 0",
                        "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0"):
            conn.exec_driver_sql(f"SET LOCAL {setting}")
        found = conn.execute(text(
            "SELECT DISTINCT job_id FROM job_output WHERE multiflexi_output_text(data) "
            "ILIKE :p"),
            {"p": "%fv-0004%"}).scalars().all()
    assert found == [history.ran[3]]


@pytest.mark.parametrize("backend", ["postgresql"])  # (SQLite's reader has one snapshot)
def test_a_search_finds_the_line_the_indexer_moves_meanwhile(core: Core, history: History,
                                                             backend: str) -> None:
    """The indexer moves a chunk from its queue to the index in one commit while a search
    reads both: the search still finds the job and its line (statements with a snapshot
    each saw the chunk in neither, and job.list left out the line that matched)."""
    from sqlalchemy import event

    from multiflexid.services.joblist import JobFilter, list_jobs

    job_id = history.ran[0]
    _print(core, job_id, "needle QZ-9417 in a fresh line")  # noted, not indexed yet
    engine = core.db.read_engine
    moved: list[int] = []

    def indexer_commits(*_args: Any) -> None:
        if not moved:  # after the search's first statement
            moved.append(1)
            _reindex(core)

    event.listen(engine, "after_cursor_execute", indexer_commits)
    try:
        with core.db.read_session() as s:
            page = list_jobs(s, JobFilter(text="qz-9417"))
    finally:
        event.remove(engine, "after_cursor_execute", indexer_commits)
    assert moved
    assert [j.id for j in page.jobs] == [job_id]
    assert page.matches[job_id][1] == "needle QZ-9417 in a fresh line"
