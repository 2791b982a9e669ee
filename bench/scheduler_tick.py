"""Scheduler tick cost: 100k active templates with nothing due, then 10k due at once.

(a) TEMPLATES active hourly templates (bulk-inserted with SQLAlchemy Core, next tick a
    day ahead), then ``multiflexid.services.lifecycle.tick`` in a write transaction on
    one long-lived session, as the daemon's database thread runs it, REPEAT times:
    median and p99 (target < 5 ms).
(b) DUE of them made due (next tick in the past), then ticks with the default batch
    of 1000 one after the other, as the scheduler loops while a batch comes back full,
    until every due template has its job queued (target < 2 s). The jobs and queue rows
    are counted afterwards.

The reference of the same run is a bare ``SELECT 1`` transaction on the same session
(the floor any tick pays). PostgreSQL gets ``ANALYZE`` after the bulk insert (autovacuum
would have run it on a live system); SQLite gets nothing (the daemon never analyses).

    .venv/bin/python bench/scheduler_tick.py [--templates 100000] [--due 10000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from benchlib import (
    Figure,
    add_backend_arg,
    app_doc,
    backends_of,
    make_app_company,
    med,
    p99,
    print_table,
)
from common import install
from sqlalchemy import func, insert, select, text, update

from multiflexid.core import Core
from multiflexid.services import lifecycle
from multiflexid.store.orm import RUNTEMPLATES, Job, Schedule

TICK_TARGET_MS = 5.0
DUE_TARGET_S = 2.0
CHUNK = 10_000


def bulk_templates(core: Core, app_id: int, company_id: int, count: int,
                   next_schedule: datetime) -> tuple[int, int]:
    """``count`` hourly templates straight into the table; (first id, last id)."""
    now = datetime.now(UTC)
    row = {
        "app_id": app_id, "company_id": company_id, "interv": "h", "delay": 0,
        "executor": "Native", "active": True, "max_attempts": 1, "retry_backoff": "none",
        "retry_min_gap": 60, "success_actions": [], "fail_actions": [],
        "next_schedule": next_schedule, "successful_jobs_count": 0, "failed_jobs_count": 0,
        "created_at": now, "updated_at": now,
    }
    with core.db.session() as s:
        before = s.scalar(select(func.max(RUNTEMPLATES.c.id))) or 0
        conn = s.connection()
        for start in range(0, count, CHUNK):
            conn.execute(insert(RUNTEMPLATES), [
                {**row, "name": f"bulk{i}"} for i in range(start, min(count, start + CHUNK))])
        last = s.scalar(select(func.max(RUNTEMPLATES.c.id))) or 0
    assert last - before == count, (before, last, count)
    if not core.db.is_sqlite:
        with core.db.engine.connect() as c:
            c.execute(text("ANALYZE"))
            c.commit()
    return before + 1, last


def _timed_transactions(core: Core, fn: object, repeat: int) -> list[float]:
    session = core.db.new_session()
    times = []
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            with core.db.transaction(session) as s:
                fn(s)  # type: ignore[operator]
            times.append((time.perf_counter() - start) * 1000)
    finally:
        session.close()
    return times


def run(backend: str, templates: int, due: int, repeat: int) -> dict[str, float]:
    with install(backend, fsync=True) as inst:
        core = inst.core()
        app_id, comp_id = make_app_company(core, app_doc("true", "true"))
        t0 = time.perf_counter()
        first, _last = bulk_templates(core, app_id, comp_id, templates,
                                      datetime.now(UTC) + timedelta(days=1))
        made = time.perf_counter() - t0
        print(f"  ({backend}: {templates} templates inserted in {made:.1f} s)", flush=True)

        floor = _timed_transactions(core, lambda s: s.execute(text("SELECT 1")), repeat)
        idle = _timed_transactions(
            core, lambda s: lifecycle.tick(s, core.transitions, datetime.now(UTC)), repeat)
        with core.db.read_session() as s:
            assert not s.scalar(select(func.count()).select_from(Job))

        with core.db.session() as s:
            s.execute(update(RUNTEMPLATES).where(RUNTEMPLATES.c.id < first + due)
                      .values(next_schedule=datetime.now(UTC) - timedelta(hours=2)))
        session = core.db.new_session()
        created = rounds = 0
        start = time.perf_counter()
        try:
            while True:
                with core.db.transaction(session) as s:
                    result = lifecycle.tick(s, core.transitions, datetime.now(UTC))
                rounds += 1
                created += len(result.created)
                if len(result.created) + len(result.skipped) < 1000:
                    break
        finally:
            session.close()
        burst = time.perf_counter() - start
        with core.db.read_session() as s:
            jobs = s.scalar(select(func.count()).select_from(Job)) or 0
            queued = s.scalar(select(func.count()).select_from(Schedule)) or 0
        core.close()
    assert created == jobs == queued == due, (created, jobs, queued, due)
    return {"floor_ms": med(floor), "idle_ms": med(idle), "idle_p99_ms": p99(idle),
            "burst_s": burst, "rounds": rounds, "insert_s": made}


def measure(backends: tuple[str, ...] = ("sqlite", "postgresql"), templates: int = 100_000,
            due: int = 10_000, repeat: int = 200, verbose: bool = True) -> list[Figure]:
    figures = []
    for backend in backends:
        r = run(backend, templates, due, repeat)
        if verbose:
            print(f"  {backend}: SELECT 1 transaction {r['floor_ms']:.2f} ms; tick with "
                  f"nothing due: median {r['idle_ms']:.2f} ms, p99 {r['idle_p99_ms']:.2f} ms; "
                  f"{due} due: all queued in {r['burst_s']:.2f} s ({r['rounds']} ticks, "
                  f"{due / r['burst_s']:.0f} jobs/s)", flush=True)
        figures.append(Figure(f"tick, {templates // 1000}k templates, none due (median)",
                              backend, r["idle_ms"], "ms", f"< {TICK_TARGET_MS:g} ms",
                              r["idle_ms"] < TICK_TARGET_MS,
                              note=f"p99 {r['idle_p99_ms']:.1f} ms; SELECT 1 transaction "
                                   f"{r['floor_ms']:.2f} ms"))
        figures.append(Figure(f"{due // 1000}k templates due at once → all queued", backend,
                              r["burst_s"], "s", f"< {DUE_TARGET_S:g} s",
                              r["burst_s"] < DUE_TARGET_S,
                              note=f"{due / r['burst_s']:.0f} jobs/s, {r['rounds']} ticks"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="What is timed: see the module docstring.")
    parser.add_argument("--templates", type=int, default=100_000,
                        help="active templates [100000]")
    parser.add_argument("--due", type=int, default=10_000,
                        help="templates made due at once [10000]")
    parser.add_argument("--repeat", type=int, default=200,
                        help="ticks timed with nothing due [200]")
    add_backend_arg(parser)
    args = parser.parse_args()
    if args.due > args.templates:
        parser.error("--due cannot exceed --templates")
    figures = measure(backends_of(args.backend), args.templates, args.due, args.repeat)
    print_table(figures, "scheduler tick (fsync on)")


if __name__ == "__main__":
    main()
