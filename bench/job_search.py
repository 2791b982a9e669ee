"""1M jobs with output: a text search through the socket (job.list ``text``), p50 and p99.

JOBS finished jobs are bulk-inserted as in history_query.py (100 companies, one run
template each). Every job gets one output chunk of 3 to 6 lines, made by one bulk
``INSERT ... SELECT`` from the job table (SQL string functions of the job's id: no
Python per row), varied the way import jobs' logs are: the job's bank statement and
company, an invoice number out of 100 000 with an amount, a Czech line in one job of 7,
a connection error naming one of 37 servers in one job of 10, a masked token in one of 50
(about 250 bytes a job, 250 MB of output at 1M jobs).

Then the index is built as the daemon builds it for an upgraded installation's history:
its indexer's step (``index_some`` of store/search_sqlite.py or store/search_pg.py) in
transactions of 8 MB until nothing is left (the rate in MB/s is printed: what the
daemon's background indexer does while idle). Its size on disk is measured: SQLite the
growth of the database file (pages in use), PostgreSQL the copy of the output's text and
its GIN index (``pg_total_relation_size`` of job_output_search); beside the size of the
output itself.

The daemon is started and SEARCHES ``job.list {text, limit: 50}`` calls are timed on the
client (``multiflexi.client.Client``), after 3 warm-up calls, cycling through searches
from rare to common: an invoice number (about 10 jobs), a server's error (about 2 700
jobs), a Czech word (1 in 7), a company's statement line with ``company_id`` (1 in 100),
``ERROR`` (1 in 10), a line every job has, text no job has. Median and p99 of all, and
per kind. The reference (PostgreSQL): an invoice number searched without the index, as a
database without ``pg_trgm`` runs it (a scan of all output).

    .venv/bin/python bench/job_search.py [--jobs 1000000] [--searches 200] [--backend ...]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import Any

from benchlib import Figure, add_backend_arg, backends_of, med, p99, print_table
from common import install
from history_query import fill_history
from sqlalchemy import text

from multiflexi.client import Client
from multiflexid.core import Core
from multiflexid.store import search_pg
from multiflexid.store.search import OutputSearch

# One chunk of output per job, from its id alone (the same SQL on both backends: `||`,
# `%`, `CASE`; NL is the newline).
_LINES = (
    "'2024-05-01 06:00:00 INFO reading bank statement ' || (id % 9973) || '/2024 of "
    "company c' || company_id || NL"
    " || 'imported invoice FV-' || (2000000 + (id * 7919) % 100000) || ' amount ' || "
    "((id * 104729) % 100000) || '.50 CZK' || NL"
    " || CASE WHEN id % 7 = 0 THEN 'Účetní doklad ' || (id % 1000) || ' zaúčtován' || NL "
    "ELSE '' END"
    " || CASE WHEN id % 10 = 0 THEN 'ERROR: connection refused by abraflexi-' || (id % 37) "
    "|| '.example:5434' || NL ELSE 'statement balanced, 0 warnings' || NL END"
    " || CASE WHEN id % 50 = 0 THEN 'using token ********' || NL ELSE '' END"
    " || 'done in ' || (id % 60) || ' s' || NL"
)
SQLITE_FILL = ("INSERT INTO job_output (job_id, seq, stream, at, data) "
               f"SELECT id, 1, 'stdout', \"end\", CAST({_LINES.replace('NL', 'char(10)')} AS BLOB) "
               "FROM job WHERE id BETWEEN :lo AND :hi")
PG_FILL = ("INSERT INTO job_output (job_id, seq, stream, at, data) "
           f"SELECT id, 1, 'stdout', \"end\", convert_to({_LINES.replace('NL', 'chr(10)')}, "
           "'UTF8') FROM job WHERE id BETWEEN :lo AND :hi")
STEP = 100_000


def fill_output(core: Core, jobs: int) -> float:
    """One chunk per job; the bytes of output written."""
    sql = SQLITE_FILL if core.db.is_sqlite else PG_FILL
    for lo in range(1, jobs + 1, STEP):
        with core.db.session() as s:
            s.execute(text(sql), {"lo": lo, "hi": lo + STEP - 1})
    with core.db.read_session() as s:
        return float(s.scalar(text("SELECT sum(length(data)) FROM job_output")) or 0)


def _sqlite_bytes(core: Core) -> int:
    with core.db.engine.connect() as c:
        pages = c.exec_driver_sql("PRAGMA page_count").scalar() or 0
        free = c.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
        size = c.exec_driver_sql("PRAGMA page_size").scalar() or 0
    return int((pages - free) * size)


def build_index(core: Core) -> tuple[float, float]:
    """(seconds, bytes on disk) of the index over what is stored."""
    index = OutputSearch(core.db.dialect)
    before = _sqlite_bytes(core) if core.db.is_sqlite else 0
    t0 = time.perf_counter()
    while True:
        with core.db.session() as s:
            rows, _size = index.index_some(s, 8 * 1024 * 1024)
        if not rows:
            break
    seconds = time.perf_counter() - t0
    if core.db.is_sqlite:
        return seconds, float(_sqlite_bytes(core) - before)
    with core.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql(f"VACUUM ANALYZE {search_pg.TABLE}")  # what autovacuum does
        size = c.execute(text("SELECT pg_total_relation_size(:t)"),
                         {"t": search_pg.TABLE}).scalar()
    return seconds, float(size or 0)


def output_bytes_on_disk(core: Core) -> float:
    if core.db.is_sqlite:
        with core.db.engine.connect() as c:
            try:
                return float(c.exec_driver_sql(
                    "SELECT sum(pgsize) FROM dbstat WHERE name IN ('job_output', "
                    "'sqlite_autoindex_job_output_1')").scalar() or 0)
            except Exception:  # no dbstat in this SQLite: unknown
                return float("nan")
    with core.db.engine.connect() as c:
        return float(c.execute(text("SELECT pg_table_size('job_output') + "
                                    "pg_relation_size('pk_job_output')")).scalar() or 0)


def searches(companies: list[int]) -> list[tuple[str, dict[str, Any]]]:
    """(kind, job.list params), rare to common; varied within each kind."""
    out: list[tuple[str, dict[str, Any]]] = []
    for k in range(40):
        out += [
            ("invoice number (~10 jobs)", {"text": f"FV-{2000000 + (k * 2467) % 100000}"}),
            ("a server's error (~2.7k jobs)", {"text": f"refused by abraflexi-{k % 37}.example"}),
            ("Czech word, any case (1 in 7)", {"text": "ÚČETNÍ DOKLAD"}),
            ("a company's statements (1 in 100)",
             {"text": "reading bank statement", "company_id": companies[k % len(companies)]}),
            ("ERROR (1 in 10)", {"text": "ERROR"}),
        ]
        if k % 4 == 0:
            out.append(("every job", {"text": "statement"}))
            out.append(("no job", {"text": f"no such text {k}"}))
    return out


def run(backend: str, njobs: int, nsearches: int) -> dict[str, Any]:
    with install(backend, fsync=True) as inst:
        core = inst.core()
        t0 = time.perf_counter()
        comp_ids = fill_history(core, njobs, 100)
        output = fill_output(core, njobs)
        fill = time.perf_counter() - t0
        print(f"  ({backend}: {njobs} jobs, {output / 1e6:.0f} MB of output in {fill:.0f} s)",
              flush=True)
        index_s, index_bytes = build_index(core)
        stored = output_bytes_on_disk(core)
        print(f"  ({backend}: index built in {index_s:.0f} s = "
              f"{output / 1e6 / index_s:.1f} MB/s of output, {index_bytes / 1e6:.0f} MB on "
              f"disk; the output itself {stored / 1e6:.0f} MB)", flush=True)
        core.close()
        daemon = inst.daemon().start()
        timings: dict[str, list[float]] = defaultdict(list)
        try:
            with Client(daemon.socket, timeout=120) as c:
                plan = searches(comp_ids)
                for n in range(nsearches + 3):
                    kind, params = plan[n % len(plan)]
                    start = time.perf_counter()
                    reply = c.call_with("job.list", {**params, "limit": 50})
                    elapsed = (time.perf_counter() - start) * 1000
                    if kind == "no job":
                        assert reply["items"] == [], params
                    elif kind != "invoice number (~10 jobs)":
                        assert reply["items"], params
                    if n >= 3:
                        timings[kind].append(elapsed)
                unindexed = _without_index(inst, c, plan) if backend == "postgresql" else []
        finally:
            daemon.stop()
    every = [t for ts in timings.values() for t in ts]
    return {"median": med(every), "p99": p99(every), "n": len(every),
            "unindexed": med(unindexed),
            "by_kind": {k: (med(v), p99(v)) for k, v in timings.items()},
            "output_mb": output / 1e6, "index_s": index_s, "index_mb": index_bytes / 1e6,
            "stored_mb": stored / 1e6}


def _without_index(inst: Any, client: Client, plan: list[tuple[str, dict[str, Any]]]
                   ) -> list[float]:
    """A rare text (an invoice number) searched without the trigram index, 3 times (ms):
    every chunk is read."""
    core = inst.core()
    with core.db.engine.begin() as c:
        c.exec_driver_sql(f"DROP INDEX {search_pg.INDEX}")
    core.close()
    out = []
    for _kind, params in [p for p in plan if p[0].startswith("invoice")][:3]:
        start = time.perf_counter()
        client.call_with("job.list", {**params, "limit": 50})
        out.append((time.perf_counter() - start) * 1000)
    return out


def measure(backends: tuple[str, ...] = ("sqlite", "postgresql"), jobs: int = 1_000_000,
            searches_: int = 200, verbose: bool = True) -> list[Figure]:
    figures = []
    size = f"{jobs / 1e6:g}M" if jobs >= 1_000_000 else f"{jobs // 1000}k"
    for backend in backends:
        r = run(backend, jobs, searches_)
        if verbose:
            print(f"  {backend}: job.list text=… limit=50 over {size} jobs' output: median "
                  f"{r['median']:.1f} ms, p99 {r['p99']:.1f} ms (n={r['n']})")
            for kind, (m, p) in r["by_kind"].items():
                print(f"    {kind:36s} median {m:7.1f} ms  p99 {p:7.1f} ms")
        what = f"text search in the output of {size} jobs, via the socket"
        note = (f"index {r['index_mb']:.0f} MB for {r['output_mb']:.0f} MB of output, "
                f"built in {r['index_s']:.0f} s")
        if r["unindexed"] == r["unindexed"]:  # (not NaN)
            note += f"; an invoice number without it: {r['unindexed']:,.0f} ms"
        figures.append(Figure(f"{what} (median)", backend, r["median"], "ms", note=note))
        figures.append(Figure(f"{what} (p99)", backend, r["p99"], "ms", note=f"n={r['n']}"))
        figures.append(Figure(f"its index on disk, {size} jobs", backend, r["index_mb"], "MB",
                              note=f"the output itself: {r['stored_mb']:.0f} MB"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="What is measured: see the module docstring.")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in history [1000000]")
    parser.add_argument("--searches", type=int, default=200, help="timed searches [200]")
    add_backend_arg(parser)
    args = parser.parse_args()
    figures = measure(backends_of(args.backend), args.jobs, args.searches)
    print_table(figures, "text search in job output through the protocol")


if __name__ == "__main__":
    main()
