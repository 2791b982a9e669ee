"""Dispatch throughput: N trivial native jobs end to end through the real daemon.

queued -> claimed -> run -> output and exit recorded, parallelism 2, against a bare serial
``subprocess.run(["true"])`` loop measured in the same run. Prints jobs/s and the ratio.

    .venv/bin/python bench/dispatch.py [--jobs 2000] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from common import Install, install, serial_true_rate
from sqlalchemy import func, select

from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.services import apps, companies, jobs, runtemplates
from multiflexid.store.orm import FINAL_STATES, Job, RunTemplate

APP = {
    "$schema": "https://raw.githubusercontent.com/VitexSoftware/"
               "php-vitexsoftware-multiflexi-core/refs/heads/main/schema/application.json",
    "name": "true", "description": "does nothing, successfully", "executable": "true",
    "environment": {},
}


def make_templates(inst: Install, templates: int) -> list[int]:
    core = inst.core()
    definition, _ = parse_app(json.dumps(APP))
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


def run(backend: str, n: int, parallel: int) -> dict[str, float]:
    with install(backend, fsync=True) as inst:
        rt_ids = make_templates(inst, templates=max(parallel * 4, 8))
        core = inst.core()
        daemon = inst.daemon(MULTIFLEXI_MAX_PARALLEL=str(parallel),
                             MULTIFLEXI_POLL_SECONDS="0.05")
        daemon.start()
        t0 = time.perf_counter()
        queue_jobs(core, rt_ids, n)
        start = time.perf_counter()
        print(f"  ({backend}: queued {n} jobs in {start - t0:.2f} s)")
        done = 0
        while done < n:
            time.sleep(0.05)
            with core.db.read_session() as s:
                done = s.scalar(select(func.count()).select_from(Job)
                                .where(Job.state.in_(FINAL_STATES))) or 0
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log()
        elapsed = time.perf_counter() - start
        with core.db.read_session() as s:
            ok = s.scalar(select(func.count()).select_from(Job)
                          .where(Job.state == "succeeded")) or 0
        daemon.stop()
        core.close()
    assert ok == n, f"only {ok} of {n} jobs succeeded"
    return {"jobs": n, "seconds": elapsed, "rate": n / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    baseline = serial_true_rate(min(args.jobs, 2000))
    print(f"baseline: serial subprocess.run(['true']) loop: {baseline:.0f} jobs/s")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        r = run(backend, args.jobs, args.parallel)
        print(f"dispatch {backend:10s} (fsync on, parallel {args.parallel}): {r['jobs']} jobs "
              f"in {r['seconds']:.2f} s = {r['rate']:.0f} jobs/s = "
              f"{r['rate'] / baseline:.2f}x the serial loop")


if __name__ == "__main__":
    main()
