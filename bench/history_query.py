"""1M jobs in history: the latest 50 of one company through the protocol (target < 50 ms).

JOBS finished jobs are bulk-inserted (SQLite: SQLAlchemy Core executemany of CHUNK rows;
PostgreSQL: COPY; one transaction per 100k rows) spread round-robin over COMPANIES companies, each
with one run template; every job carries a command, a recorded environment of 12 keys
and times, like a real one. PostgreSQL gets ``ANALYZE`` after the insert (autovacuum
would have run it). Then the daemon is started and ``job.list`` with ``company_id`` and
``limit=50`` is called CALLS times (a different company each time, after 3 warm-up
calls) through ``multiflexi.client.Client``, timed on the client: median and p99.

The reference of the same run is ``daemon.status`` through the same client (the round
trip of a request that reads nothing).

    .venv/bin/python bench/history_query.py [--jobs 1000000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchlib import (
    Figure,
    add_backend_arg,
    app_doc,
    backends_of,
    med,
    p99,
    print_table,
)
from common import install
from sqlalchemy import column, insert, table, text

from multiflexi.client import Client
from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.services import apps, companies
from multiflexid.store.orm import RUNTEMPLATES

TARGET_MS = 50.0
CHUNK = 10_000
PER_TRANSACTION = 100_000

ENV = {
    "values": {f"KEY_{i:02d}": f"value number {i}" for i in range(12)},
    "sources": {f"KEY_{i:02d}": "app default" for i in range(12)},
}


def fill_history(core: Core, jobs: int, ncompanies: int) -> list[int]:
    """The companies' ids; ``jobs`` finished jobs spread over them."""
    definition, _ = parse_app(json.dumps(app_doc("true", "true")))
    now = datetime.now(UTC)
    with core.db.session() as s:
        app, _ = apps.upsert_app(s, definition)
        comp_ids = [companies.create_company(s, name=f"Company {i}", slug=f"c{i}").id
                    for i in range(ncompanies)]
        app_id = app.id
    with core.db.session() as s:
        conn = s.connection()
        conn.execute(insert(RUNTEMPLATES), [{
            "app_id": app_id, "company_id": c, "name": f"daily {c}", "interv": "d",
            "delay": 0, "executor": "Native", "active": True, "max_attempts": 1,
            "retry_backoff": "none", "retry_min_gap": 60, "success_actions": [],
            "fail_actions": [], "successful_jobs_count": 0, "failed_jobs_count": 0,
            "created_at": now, "updated_at": now} for c in comp_ids])
        rt_of: dict[int, int] = dict(
            conn.execute(text("SELECT company_id, id FROM runtemplate")).tuples().all())
    # A plain table() without types: values go to the driver as they are, already in the
    # stored form (UTCDateTime's naive-UTC text on SQLite, JSON text), so a million rows
    # do not pay the ORM types' per-value processing.
    cols = ["runtemplate_id", "app_id", "company_id", "runtemplate_name", "state",
            "schedule_type", "schedule", "tick", "executor", "command", "env", "overrides",
            "begin", "end", "exitcode", "pid", "launched_by", "node", "attempt",
            "cancel_requested", "output_bytes", "output_dropped", "created_at", "updated_at"]
    plain = table("job", *[column(c) for c in cols])
    copy_sql = "COPY job (" + ", ".join(f'"{c}"' for c in cols) + ") FROM STDIN"
    sqlite = core.db.is_sqlite
    env, command, overrides = json.dumps(ENV), json.dumps(["true"]), "{}"

    def stamp(t: datetime) -> Any:
        return t.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else t

    start = now - timedelta(seconds=jobs)
    half = timedelta(seconds=0.5)
    done = 0
    while done < jobs:
        with core.db.session() as s:
            conn = s.connection()
            for first in range(done, min(jobs, done + PER_TRANSACTION), CHUNK):
                rows = []
                for k in range(first, min(jobs, first + CHUNK)):
                    comp = comp_ids[k % ncompanies]
                    at = start + timedelta(seconds=k)
                    at_s, end_s = stamp(at), stamp(at + half)
                    ok = k % 10 != 0
                    rows.append({
                        "runtemplate_id": rt_of[comp], "app_id": app_id, "company_id": comp,
                        "runtemplate_name": f"daily {comp}",
                        "state": "succeeded" if ok else "failed",
                        "schedule_type": "daily", "schedule": at_s, "tick": at_s,
                        "executor": "Native", "command": command, "env": env,
                        "overrides": overrides, "begin": at_s, "end": end_s,
                        "exitcode": 0 if ok else 1, "pid": 1000 + k % 30000,
                        "launched_by": "scheduler", "node": "bench", "attempt": 1,
                        "cancel_requested": False, "output_bytes": 120, "output_dropped": 0,
                        "created_at": at_s, "updated_at": at_s,
                    })
                if sqlite:
                    conn.execute(insert(plain), rows)
                else:  # COPY: a million rows in seconds, not minutes of executemany
                    raw = conn.connection.driver_connection
                    with raw.cursor() as cur, cur.copy(copy_sql) as copy:  # type: ignore[union-attr]
                        for row in rows:
                            copy.write_row([row[c] for c in cols])
            done = min(jobs, done + PER_TRANSACTION)
    if not core.db.is_sqlite:
        with core.db.engine.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
    return comp_ids


def _timed_calls(client: Client, method: str, calls: int, params: list[dict[str, int]],
                 ) -> list[float]:
    out = []
    for k in range(calls + 3):
        p = params[k % len(params)]
        start = time.perf_counter()
        reply = client.call(method, **p)
        elapsed = (time.perf_counter() - start) * 1000
        if method == "job.list":
            assert len(reply["items"]) == 50, len(reply["items"])
            assert all(j["company_id"] == p["company_id"] for j in reply["items"])
        if k >= 3:
            out.append(elapsed)
    return out


def run(backend: str, jobs: int, ncompanies: int, calls: int) -> dict[str, float]:
    with install(backend, fsync=True) as inst:
        core = inst.core()
        t0 = time.perf_counter()
        comp_ids = fill_history(core, jobs, ncompanies)
        fill = time.perf_counter() - t0
        core.close()
        print(f"  ({backend}: {jobs} jobs inserted in {fill:.1f} s)", flush=True)
        daemon = inst.daemon().start()
        try:
            with Client(daemon.socket, timeout=60) as c:
                floor = _timed_calls(c, "daemon.status", calls, [{}])
                got = _timed_calls(c, "job.list", calls,
                                   [{"company_id": i, "limit": 50} for i in comp_ids[::7]])
        finally:
            daemon.stop()
    return {"median": med(got), "p99": p99(got), "floor": med(floor), "fill_s": fill}


def measure(backends: tuple[str, ...] = ("sqlite", "postgresql"), jobs: int = 1_000_000,
            ncompanies: int = 100, calls: int = 50, verbose: bool = True) -> list[Figure]:
    figures = []
    for backend in backends:
        r = run(backend, jobs, ncompanies, calls)
        if verbose:
            print(f"  {backend}: job.list company_id=X limit=50 over {jobs} jobs: median "
                  f"{r['median']:.1f} ms, p99 {r['p99']:.1f} ms (daemon.status "
                  f"{r['floor']:.2f} ms)", flush=True)
        size = f"{jobs / 1e6:g}M" if jobs >= 1_000_000 else f"{jobs // 1000}k"
        figures.append(Figure(f"job.list latest 50 of a company, {size} jobs (median)", backend,
                              r["median"], "ms", f"< {TARGET_MS:g} ms", r["median"] < TARGET_MS,
                              note=f"daemon.status round trip {r['floor']:.2f} ms"))
        figures.append(Figure(f"job.list latest 50 of a company, {size} jobs (p99)", backend,
                              r["p99"], "ms", f"< {TARGET_MS:g} ms", r["p99"] < TARGET_MS,
                              note=f"n={calls}; bulk insert took {r['fill_s']:.0f} s"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="What is measured: see the module docstring.")
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs in history [1000000]")
    parser.add_argument("--companies", type=int, default=100, help="companies [100]")
    parser.add_argument("--calls", type=int, default=50, help="timed job.list calls [50]")
    add_backend_arg(parser)
    args = parser.parse_args()
    figures = measure(backends_of(args.backend), args.jobs, args.companies, args.calls)
    print_table(figures, "job history through the protocol")


if __name__ == "__main__":
    main()
