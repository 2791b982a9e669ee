"""The same subprocess work through multiflexid, procrastinate and pgqueuer on PostgreSQL.

Every job is one ``subprocess.run(["true"])``, two at a time, on a fresh PostgreSQL
cluster with fsync on. End to end: N jobs are queued, then the clock runs until all are
done, each system knowing "done" its own way:

- multiflexid: bench/dispatch.py's ``run()`` — the real daemon, jobs queued in one
  transaction, done = every job in a final state (its cluster is a fresh one of its own,
  started the same way);
- procrastinate 3.x: ``batch_defer`` of N jobs of a sync task, then
  ``run_worker_async(wait=False, concurrency=2)``, which returns once the queue is empty
  and the running jobs have ended (sync tasks run in worker threads);
- pgqueuer 1.x (asyncpg): ``Queries.enqueue`` of N jobs, then ``QueueManager.run(mode=
  drain, batch_size=10)``, which returns once the queue is empty and every task ended;
  the async entrypoint runs the subprocess with ``asyncio.to_thread`` behind a semaphore
  of 2 (pgqueuer runs only async entrypoints). pgqueuer's own limits are slower here:
  ``concurrency_limit=2`` counts picked rows until the completion log buffer is flushed
  (~20 jobs/s), ``max_concurrent_tasks=2`` forces ``batch_size=1`` (~0.2x).

Each repetition measures the bare serial ``subprocess.run(["true"])`` loop first (the
baseline, N runs) and the 2-thread loop (the ceiling of parallelism 2); ratios are per
repetition, against that repetition's baseline, and the medians are printed.

    .venv/bin/python bench/compare_queues.py [--jobs 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import time

from benchlib import Figure, med, print_table, threaded_true_rate
from common import serial_true_rate

from tests.support.pgcluster import PgCluster


def run_procrastinate(cluster: PgCluster, dbname: str, n: int, parallel: int) -> float:
    """Seconds from N queued jobs to all done, through procrastinate."""
    import procrastinate

    cluster.psql(f"CREATE DATABASE {dbname}")
    conninfo = f"host={cluster.root} user={cluster.superuser} dbname={dbname}"

    async def go() -> float:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo))

        @app.task(name="true")
        def true_task() -> None:
            subprocess.run(["true"], check=True)

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            await true_task.batch_defer_async(*([{}] * n))
            start = time.perf_counter()
            await app.run_worker_async(wait=False, concurrency=parallel,
                                       install_signal_handlers=False)
            return time.perf_counter() - start

    elapsed = asyncio.run(go())
    rows = cluster.psql("SELECT status, count(*) FROM procrastinate_jobs GROUP BY status",
                        dbname).split()
    done = dict(r.split("|") for r in rows)
    assert done == {"succeeded": str(n)}, f"procrastinate: {done}"
    return elapsed


def run_pgqueuer(cluster: PgCluster, dbname: str, n: int, parallel: int) -> float:
    """Seconds from N queued jobs to all done, through pgqueuer."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    cluster.psql(f"CREATE DATABASE {dbname}")

    async def go() -> float:
        conn = await asyncpg.connect(host=str(cluster.root), user=cluster.superuser,
                                     database=dbname)
        try:
            queries = Queries(AsyncpgDriver(conn))
            await queries.install()
            qm = QueueManager(queries)
            slots = asyncio.Semaphore(parallel)

            @qm.entrypoint("true")
            async def true_entry(job: object) -> None:
                async with slots:
                    await asyncio.to_thread(subprocess.run, ["true"], check=True)

            await queries.enqueue(["true"] * n, [None] * n, [0] * n)
            start = time.perf_counter()
            await qm.run(mode=QueueExecutionMode.drain, batch_size=10)
            elapsed = time.perf_counter() - start
            ok = await conn.fetchval(
                "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
            left = await queries.queued_work(["true"])  # type: ignore[list-item]
        finally:
            await conn.close()
        assert ok == n and left == 0, f"pgqueuer: {ok} successful, {left} left"
        return elapsed

    return asyncio.run(go())


def measure(jobs: int = 2000, repeat: int = 3, parallel: int = 2, sqlite: bool = False,
            verbose: bool = True) -> list[Figure]:
    """Figures of REPEAT interleaved repetitions; with ``sqlite``, multiflexid's dispatch on
    SQLite too (against the same repetition's baseline)."""
    from dispatch import executor_alone_rate
    from dispatch import run as dispatch_run

    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    logging.getLogger("pgqueuer").setLevel(logging.ERROR)
    names = ["multiflexid", "procrastinate", "pgqueuer"] + (["multiflexid-sqlite"] if sqlite
                                                            else [])
    ratios: dict[str, list[float]] = {k: [] for k in names}
    rates: dict[str, list[float]] = {k: [] for k in names}
    vs_peer: list[float] = []
    costs: dict[str, list[dict[str, float]]] = {"postgresql": [], "sqlite": []}
    serials: list[float] = []
    threaded: list[float] = []
    alone: list[float] = []
    cluster = PgCluster(fsync=True).start()
    try:
        for rep in range(1, repeat + 1):
            base = serial_true_rate(jobs)
            two = threaded_true_rate(jobs, parallel)
            serials.append(base)
            threaded.append(two)
            alone.append(executor_alone_rate(jobs, parallel) / base)
            pg_run = dispatch_run("postgresql", jobs, parallel)
            costs["postgresql"].append(pg_run)
            got = {
                "multiflexid": pg_run["rate"],
                "procrastinate": jobs / run_procrastinate(cluster, f"procr{rep}", jobs,
                                                          parallel),
                "pgqueuer": jobs / run_pgqueuer(cluster, f"pgq{rep}", jobs, parallel),
            }
            if sqlite:
                lite_run = dispatch_run("sqlite", jobs, parallel)
                costs["sqlite"].append(lite_run)
                got["multiflexid-sqlite"] = lite_run["rate"]
            if verbose:
                print(f"  rep {rep}: serial loop {base:.0f}/s, {parallel} threads {two:.0f}/s; "
                      + ", ".join(f"{k} {v:.0f}/s = {v / base:.2f}x" for k, v in got.items()),
                      flush=True)
            for k, v in got.items():
                rates[k].append(v)
                ratios[k].append(v / base)
            vs_peer.append(got["multiflexid"] / max(got["procrastinate"], got["pgqueuer"]))
    finally:
        cluster.stop()
    what = f"{jobs} true jobs, parallel {parallel}, vs serial loop"
    figures = [
        Figure("serial subprocess.run(['true']) loop", "-", med(serials), "jobs/s",
               note="the baseline of every ratio"),
        Figure(f"same loop, {parallel} threads", "-", med(threaded), "jobs/s",
               note=f"{med([t / s for t, s in zip(threaded, serials, strict=True)]):.2f}x "
                    "the serial loop"),
        Figure(f"multiflexid's native executor alone, parallel {parallel}", "-", med(alone),
               "x", note="Popen, pidfd and pipes on the event loop, nothing on record: what "
                         "launching costs; the rest of the gap is the record"),
        Figure(f"procrastinate: {what}", "postgresql", med(ratios["procrastinate"]), "x",
               note=f"{med(rates['procrastinate']):.0f} jobs/s"),
        Figure(f"pgqueuer: {what}", "postgresql", med(ratios["pgqueuer"]), "x",
               note=f"{med(rates['pgqueuer']):.0f} jobs/s"),
        Figure(f"multiflexid dispatch: {what}", "postgresql", med(ratios["multiflexid"]), "x",
               "≥ pgqueuer", med(ratios["multiflexid"]) >= med(ratios["pgqueuer"]),
               note=f"{med(rates['multiflexid']):.0f} jobs/s"),
        Figure("multiflexid dispatch vs the faster peer", "postgresql", med(vs_peer), "x",
               "> 1x", med(vs_peer) > 1.0, note="same rep's faster of procrastinate, pgqueuer"),
    ]
    if sqlite:
        figures.append(Figure(f"multiflexid dispatch: {what}", "sqlite",
                              med(ratios["multiflexid-sqlite"]), "x", "≥ 0.9x",
                              med(ratios["multiflexid-sqlite"]) >= 0.9,
                              note=f"{med(rates['multiflexid-sqlite']):.0f} jobs/s"))
    figures += per_job_costs(costs, med(serials))
    return figures


def per_job_costs(costs: dict[str, list[dict[str, float]]], serial: float) -> list[Figure]:
    """What each dispatched job cost (medians of the repetitions): daemon CPU, and what
    the daemon asked of the database (bench/dispatch.py's counters); and what bounds the
    rate: the daemon's CPU per job (one interpreter) and its commits per job at what a
    durable commit costs on this machine, each as a ceiling against the serial loop."""
    from dispatch import ceilings

    out = []
    for backend, runs in costs.items():
        if not runs:
            continue

        def m(key: str, runs: list[dict[str, float]] = runs) -> float:
            return med([r[key] for r in runs])

        cpu_bound, commit_bound = ceilings({k: m(k) for k in runs[0]})
        note = f"writer transactions {m('writer_transactions'):.2f}"
        if backend == "postgresql":
            note = (f"statements {m('statements'):.1f}, commits {m('transactions'):.2f}, "
                    f"WAL flushes {m('wal_flushes'):.2f}, " + note)
            commits = m("transactions")
        else:
            note = "commits = " + note
            commits = m("writer_transactions")
        out.append(Figure("multiflexid dispatch, per job: daemon CPU", backend, m("cpu_ms"),
                          "ms", note=note + f"; ceiling {cpu_bound / serial:.2f}x "
                          f"({cpu_bound:.0f} jobs/s in one interpreter)"))
        out.append(Figure("multiflexid dispatch, per job: durable commits", backend, commits,
                          "", note=f"{m('commit_ms'):.2f} ms a commit here; ceiling "
                          f"{commit_bound / serial:.2f}x ({commit_bound:.0f} jobs/s)"))
        out.append(Figure("multiflexid dispatch, a slot between two jobs", backend,
                          m("between_ms"), "ms",
                          note=f"a slot takes a job every {m('cycle_ms'):.2f} ms, its process "
                          f"runs {m('run_ms'):.2f} ms; no job ran "
                          f"{100 * m('none_running'):.0f} % of the time"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="See the module docstring for how each system is driven and timed.")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per run [2000]")
    parser.add_argument("--repeat", type=int, default=3,
                        help="repetitions; medians are reported [3]")
    parser.add_argument("--parallel", type=int, default=2, help="jobs at once [2]")
    parser.add_argument("--sqlite", action="store_true",
                        help="also multiflexid's dispatch on SQLite, in the same repetitions")
    args = parser.parse_args()
    figures = measure(args.jobs, args.repeat, args.parallel, args.sqlite)
    print_table(figures, f"median of {args.repeat} (ratios vs the serial loop of the same rep)")


if __name__ == "__main__":
    main()
