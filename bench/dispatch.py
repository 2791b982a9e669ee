"""Dispatch throughput: N trivial native jobs end to end through the real daemon.

queued -> claimed -> run -> output and exit recorded, parallelism 2, against a bare serial
``subprocess.run(["true"])`` loop measured in the same run. Prints jobs/s and the ratio.
With ``--lines K`` every job is a shell script printing K log lines of about 100 bytes
(job id, invoice numbers, amounts: what an import job prints), so the cost of storing
(and indexing) output is part of each job.

    .venv/bin/python bench/dispatch.py [--jobs 2000] [--lines 0] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import Install, install, serial_true_rate
from sqlalchemy import Engine, create_engine, func, select, text

from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.services import apps, companies, jobs, runtemplates
from multiflexid.store.orm import Job, RunTemplate

APP = {
    "$schema": "https://raw.githubusercontent.com/VitexSoftware/"
               "php-vitexsoftware-multiflexi-core/refs/heads/main/schema/application.json",
    "name": "true", "description": "does nothing, successfully", "executable": "true",
    "environment": {},
}


# What a job of ``--lines K`` runs: K lines that differ per job and per line.
PRINTER = """#!/bin/sh
i=0
while [ $i -lt "$1" ]; do
  j=$MULTIFLEXI_JOB_ID
  echo "2024-05-01 06:00:$i INFO job $j: invoice FV-$j-$i imported for company bench," \
       "total $i$j.50 CZK"
  i=$((i + 1))
done
"""


def printer_app(root: Path, lines: int) -> dict[str, object]:
    script = root / "print-lines.sh"
    script.write_text(PRINTER)
    script.chmod(0o755)
    return {**APP, "name": "printer", "description": f"prints {lines} log lines",
            "executable": str(script), "cmdparams": str(lines)}


def make_templates(inst: Install, templates: int, lines: int = 0) -> list[int]:
    core = inst.core()
    definition, _ = parse_app(json.dumps(printer_app(inst.root, lines) if lines else APP))
    now = datetime.now(UTC)
    with core.db.session() as s:
        app, _ = apps.upsert_app(s, definition)
        comp = companies.create_company(s, name="Bench", slug="bench")
        ids = [runtemplates.create_runtemplate(s, app, comp, core.box, now, name=f"t{i}").id
               for i in range(templates)]
    core.close()
    return ids


def queue_jobs(core: Core, rt_ids: list[int], n: int) -> None:
    """n jobs in one transaction (on PostgreSQL its NOTIFY wakes the daemon at once)."""
    now = datetime.now(UTC)
    with core.db.session() as s:
        rts = [s.get(RunTemplate, i) for i in rt_ids]
        for k in range(n):
            rt = rts[k % len(rts)]
            assert rt is not None
            jobs.create_job(s, core.transitions, rt, schedule_type="adhoc",
                            launched_by="bench", after=now, box=core.box)


# On PostgreSQL the bench looks with a role of its own, so the statistics tell its
# statements from the daemon's.
OBSERVER = "bench_observer"
_DONE = text("SELECT count(*) FROM job WHERE state IN "
             "('succeeded', 'failed', 'timed_out', 'cancelled', 'lost', 'blocked')")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process, all its threads (and, with ``children``, of its
    children that ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(data_dir: Path) -> float:
    """CPU of a PostgreSQL server so far: the postmaster, its live processes (backends,
    writers) and those that ended."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == postmaster:
            total += cpu_seconds(int(stat.parent.name))
    return total


_DAEMONS = (f"userid <> '{OBSERVER}'::regrole AND dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())")


def observer(core: Core) -> Engine:
    """An engine of the bench's own role on the daemon's database."""
    with core.db.engine.begin() as conn:
        conn.execute(text(f"CREATE ROLE {OBSERVER} LOGIN SUPERUSER"))
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    return create_engine(core.db.url.set(username=OBSERVER))


def pg_counters(engine: Engine) -> dict[str, float]:
    """The daemon's statements (pg_stat_statements), the commits in this database (the
    bench's own reads end by rollback) and WAL flushes of the cluster, so far."""
    with engine.connect() as conn:
        stmts = conn.execute(text(
            f"SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE {_DAEMONS}")).scalar()
        xacts = conn.execute(text("SELECT xact_commit FROM pg_stat_database "
                                  "WHERE datname = current_database()")).scalar()
        syncs = conn.execute(text("SELECT wal_sync FROM pg_stat_wal")).scalar()
    return {"statements": float(stmts or 0), "transactions": float(xacts or 0),
            "wal_flushes": float(syncs or 0)}


def commit_ms(backend: str, engine: Engine, root: Path, n: int = 50) -> float:
    """What one small durable commit costs here, in ms (median): SQLite, a commit with
    synchronous=FULL on a file beside the daemon's (the same file system: its fsync);
    PostgreSQL, INSERT + COMMIT on the daemon's cluster (a round trip and a WAL flush).
    Each job's start is committed before it is launched: this is the floor under it."""
    times = []
    if backend == "sqlite":
        import sqlite3

        lite = sqlite3.connect(root / "commit-probe.db", isolation_level=None)
        lite.execute("PRAGMA journal_mode=WAL")
        lite.execute("PRAGMA synchronous=FULL")
        lite.execute("CREATE TABLE IF NOT EXISTS probe (x integer)")
        for i in range(n):
            t = time.perf_counter()
            lite.execute("BEGIN IMMEDIATE")
            lite.execute("INSERT INTO probe VALUES (?)", (i,))
            lite.execute("COMMIT")
            times.append(time.perf_counter() - t)
        lite.close()
    else:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_commit_probe (x integer)"))
        with engine.connect() as conn:
            for i in range(n):
                t = time.perf_counter()
                conn.execute(text("INSERT INTO bench_commit_probe VALUES (:i)"), {"i": i})
                conn.commit()
                times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


def top_statements(engine: Engine, n: int, limit: int = 20) -> list[str]:
    """The daemon's statements run most per job."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
            f"WHERE {_DAEMONS} ORDER BY calls DESC LIMIT :limit"), {"limit": limit}).all()
    return [f"{calls / n:6.2f}/job  {query[:110]}" for calls, query in rows]


def run(backend: str, n: int, parallel: int, statements: bool = False,
        lines: int = 0) -> dict[str, float]:
    """N jobs end to end; the rate and what each job cost: daemon CPU, the writer's
    transactions (SQLite: commits) and, on PostgreSQL, statements, transactions and WAL
    flushes."""
    with install(backend, fsync=True) as inst:
        rt_ids = make_templates(inst, templates=max(parallel * 4, 8), lines=lines)
        core = inst.core()
        looker = observer(core) if backend == "postgresql" else core.db.engine
        daemon = inst.daemon(MULTIFLEXI_MAX_PARALLEL=str(parallel),
                             MULTIFLEXI_POLL_SECONDS="0.05")
        daemon.start()
        assert daemon.proc is not None
        before_db = daemon.call("daemon.status")["database"]
        cpu0 = cpu_seconds(daemon.proc.pid)
        t0 = time.perf_counter()
        queue_jobs(core, rt_ids, n)
        start = time.perf_counter()
        print(f"  ({backend}: queued {n} jobs in {start - t0:.2f} s)")
        if backend == "postgresql":  # what dispatching costs, queueing left out
            with looker.begin() as conn:
                conn.execute(text("SELECT pg_stat_statements_reset()"))
        before_pg = pg_counters(looker) if backend == "postgresql" else {}
        server0 = server_cpu_seconds(inst.cluster.data) if inst.cluster else 0.0
        done = 0
        while done < n:
            time.sleep(0.05)
            with looker.connect() as conn:
                done = conn.execute(_DONE).scalar() or 0
            assert daemon.proc.poll() is None, daemon.log()
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(daemon.proc.pid) - cpu0
        after_db = daemon.call("daemon.status")["database"]
        costs = {"cpu_ms": 1000 * cpu / n,
                 "writer_transactions": (after_db["transactions"]
                                         - before_db["transactions"]) / n}
        if inst.cluster is not None:
            costs["server_cpu_ms"] = 1000 * (server_cpu_seconds(inst.cluster.data)
                                             - server0) / n
        if backend == "postgresql":
            after_pg = pg_counters(looker)
            if statements:
                print("\n".join(f"    {line}" for line in top_statements(looker, n)))
            costs["statements"] = (after_pg["statements"] - before_pg["statements"]) / n
            costs["transactions"] = (after_pg["transactions"]
                                     - before_pg["transactions"] - 1) / n  # - the reset
            costs["wal_flushes"] = (after_pg["wal_flushes"] - before_pg["wal_flushes"]) / n
        with core.db.read_session() as s:
            ok = s.scalar(select(func.count()).select_from(Job)
                          .where(Job.state == "succeeded")) or 0
            spans = s.execute(select(Job.begin, Job.end).where(Job.begin.is_not(None))).all()
        costs.update(slot_times(spans, parallel, n / elapsed))
        daemon.stop()
        costs["commit_ms"] = commit_ms(backend, looker, inst.root)
        core.close()
    assert ok == n, f"only {ok} of {n} jobs succeeded"
    return {"jobs": n, "seconds": elapsed, "rate": n / elapsed, **costs}


def executor_alone_rate(n: int, parallel: int) -> float:
    """Jobs per second of the daemon's native executor alone: N ``true`` through
    ``NativeExecutor.run`` (Popen on its pipes, a pidfd, the event loop), ``parallel`` at a
    time, in this process — no claim, start or end on record, no output stored. What
    launching costs; the rest of the daemon's time per job is its record."""
    import asyncio
    import tempfile

    from multiflexid.executors.base import JobSpec
    from multiflexid.executors.native import NativeExecutor

    async def go() -> float:
        executor = NativeExecutor()
        env = dict(os.environ)
        left = iter(range(n))
        with tempfile.TemporaryDirectory() as workdir:
            async def slot() -> None:
                for i in left:
                    result = await executor.run(
                        JobSpec(job_id=i, argv=["true"], env=env, workdir=Path(workdir)),
                        lambda *_: None, lambda _pid: None, asyncio.Event())
                    assert result.exitcode == 0, result

            start = time.perf_counter()
            await asyncio.gather(*(slot() for _ in range(parallel)))
            return n / (time.perf_counter() - start)

    return asyncio.run(go())


def slot_times(spans: list[Any], parallel: int, rate: float) -> dict[str, float]:
    """Where a slot's time goes, from the jobs' records: a slot takes a job every
    ``parallel / rate`` s; of that, the job's process ran (begin: its launch, end: its end
    as recorded — median) and the rest went between two jobs (recording one's end,
    committing the next one's start before launching it). Also the share of the time no
    job ran at all (a timeline of the begins and ends, the first and last 10 % left out)."""
    spans = sorted(spans)
    cut = len(spans) // 10
    kept = spans[cut:len(spans) - cut] or spans
    runs = sorted((end - begin).total_seconds() for begin, end in kept)
    events = sorted([(b, 1) for b, _e in kept] + [(e, -1) for _b, e in kept])
    idle = total = 0.0
    running = 0
    for (at, step), (nxt, _) in itertools.pairwise(events):
        running += step
        gap = (nxt - at).total_seconds()
        total += gap
        idle += gap if running <= 0 else 0.0
    cycle = 1000 * parallel / rate
    run = 1000 * runs[len(runs) // 2] if runs else 0.0
    return {"cycle_ms": cycle, "run_ms": run, "between_ms": cycle - run,
            "none_running": idle / total if total else 0.0}


def cost_line(r: dict[str, float]) -> str:
    """Per job: what the daemon spent and what it asked of the database; and the two
    ceilings they make (one interpreter's CPU; the writer's durable commits)."""
    parts = [f"daemon CPU {r['cpu_ms']:.2f} ms", f"writer transactions "
             f"{r['writer_transactions']:.2f}"]
    if "server_cpu_ms" in r:
        parts.append(f"PostgreSQL CPU {r['server_cpu_ms']:.2f} ms")
    if "statements" in r:
        parts += [f"statements {r['statements']:.1f}", f"PG commits "
                  f"{r['transactions']:.2f}", f"WAL flushes {r['wal_flushes']:.2f}"]
    cpu_bound, commit_bound = ceilings(r)
    return ("per job: " + ", ".join(parts) + f"\n  a commit here: {r['commit_ms']:.2f} ms; "
            f"ceilings: CPU {cpu_bound:.0f} jobs/s, commits {commit_bound:.0f} jobs/s"
            f"\n  a slot takes a job every {r['cycle_ms']:.2f} ms: its process runs "
            f"{r['run_ms']:.2f} ms, {r['between_ms']:.2f} ms go between two jobs; no job ran "
            f"{100 * r['none_running']:.0f} % of the time")


def ceilings(r: dict[str, float]) -> tuple[float, float]:
    """Jobs per second the daemon could not exceed: its CPU per job in one interpreter
    (the event loop and the writer share one lock), and the writer's commits per job
    one after the other at what a commit costs on this machine."""
    commits = r["transactions"] if "transactions" in r else r["writer_transactions"]
    return 1000 / r["cpu_ms"], 1000 / max(1e-9, commits * r["commit_ms"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--lines", type=int, default=0,
                        help="log lines each job prints (0: the job is `true`) [0]")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--statements", action="store_true",
                        help="PostgreSQL: also the statements run most per job")
    args = parser.parse_args()
    baseline = serial_true_rate(min(args.jobs, 2000))
    print(f"baseline: serial subprocess.run(['true']) loop: {baseline:.0f} jobs/s")
    alone = executor_alone_rate(args.jobs, args.parallel)
    print(f"the native executor alone (nothing on record), parallel {args.parallel}: "
          f"{alone:.0f} jobs/s = {alone / baseline:.2f}x the serial loop")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        r = run(backend, args.jobs, args.parallel, args.statements, args.lines)
        what = f"{args.lines}-line jobs" if args.lines else "jobs"
        print(f"dispatch {backend:10s} (fsync on, parallel {args.parallel}): {r['jobs']} {what} "
              f"in {r['seconds']:.2f} s = {r['rate']:.0f} jobs/s = "
              f"{r['rate'] / baseline:.2f}x the serial loop")
        print(f"  {cost_line(r)}")


if __name__ == "__main__":
    main()
