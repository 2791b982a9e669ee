"""Queueing cost, and what the daemon costs when there is nothing to do.

(a) Queueing over the socket: N ``runtemplate.run`` calls sent at once by one client
    (the way a script or the TUI's bulk run does), from the first call to the last answer
    (target: 2000 in under 1 s on PostgreSQL). The daemon's dispatcher is kept from
    starting them (a template ``delay``-free job still queues; ``max_parallel = 1`` and a
    holding job occupy the slot), so only queueing is measured. Reference: N
    ``daemon.status`` calls the same way (the socket's own cost).
(b) The CLI without the daemon: ``runtemplate run`` of N jobs is N processes; the figure
    is one process's time (p50), against ``multiflexi-cli --version``.
(c) Idle: TEMPLATES enabled templates, none due for a day; the daemon's CPU over a
    minute (target < 0.5% of one core) and its RSS.

    .venv/bin/python bench/queueing.py [--jobs 2000] [--templates 10000] [--idle 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import Figure, add_backend_arg, app_doc, backends_of, make_app_company, med
from common import install
from dispatch import cpu_seconds
from scheduler_tick import bulk_templates

from multiflexi.client import AsyncClient
from multiflexid.services import runtemplates
from tests.support.daemon import program

QUEUE_TARGET_S = 1.0
IDLE_TARGET_PCT = 0.5


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _burst(socket: Path, method: str, n: int, **params: object) -> float:
    async with await AsyncClient.connect(socket, timeout=120) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client.call_with(method, dict(params)) for _ in range(n)))
        return time.perf_counter() - start


def queue_over_socket(backend: str, n: int) -> list[Figure]:
    with install(backend, fsync=True) as inst:
        core = inst.core()
        app_id, company_id = make_app_company(core, app_doc("sleeper", "sleep", "60"))
        with core.db.session() as s:
            from multiflexid.services import apps, companies

            app, company = apps.get_app(s, app_id), companies.get_company(s, company_id)
            rt = runtemplates.create_runtemplate(s, app, company, core.box,
                                                 datetime.now(UTC), name="burst").id
        daemon = inst.daemon(MULTIFLEXI_MAX_PARALLEL="1")
        daemon.start()
        try:
            status = asyncio.run(_burst(daemon.socket, "daemon.status", n))
            queued = asyncio.run(_burst(daemon.socket, "runtemplate.run", n, id=rt))
        finally:
            daemon.stop(timeout=120)
            core.close()
    return [
        Figure(f"queue {n} jobs over the socket at once (runtemplate.run)", backend,
               queued, "s", f"< {QUEUE_TARGET_S:g} s" if backend == "postgresql" else "",
               queued < QUEUE_TARGET_S if backend == "postgresql" else None,
               note=f"{n / queued:.0f} jobs/s; {n} daemon.status calls: {status:.2f} s"),
    ]


def cli_run_cost(backend: str, samples: int = 10) -> list[Figure]:
    with install(backend, fsync=True) as inst:
        core = inst.core()
        app_id, company_id = make_app_company(core, app_doc("t", "true"))
        with core.db.session() as s:
            from multiflexid.services import apps, companies

            app, company = apps.get_app(s, app_id), companies.get_company(s, company_id)
            rt = runtemplates.create_runtemplate(s, app, company, core.box,
                                                 datetime.now(UTC), name="t").id
        core.close()
        env = {**os.environ, **inst.env}

        def timed(*args: str) -> float:
            start = time.perf_counter()
            subprocess.run([program("multiflexi-cli"), *args], env=env, check=True,
                           capture_output=True)
            return time.perf_counter() - start

        version = med([timed("--version") for _ in range(samples)])
        run = med([timed("runtemplate", "run", "--id", str(rt)) for _ in range(samples)])
    return [Figure("multiflexi-cli runtemplate run (no daemon), one job", backend, run * 1000,
                   "ms", note=f"multiflexi-cli --version: {version * 1000:.0f} ms")]


def idle_cost(backend: str, templates: int, seconds: float) -> list[Figure]:
    with install(backend, fsync=True) as inst:
        core = inst.core()
        app_id, company_id = make_app_company(core, app_doc("idle", "true"))
        bulk_templates(core, app_id, company_id, templates,
                       datetime.now(UTC) + timedelta(days=1))
        core.close()
        daemon = inst.daemon()
        daemon.start()
        assert daemon.proc is not None
        try:
            time.sleep(10)  # past start-up (first aggregates, caches)
            cpu0, t0 = cpu_seconds(daemon.proc.pid), time.perf_counter()
            time.sleep(seconds)
            cpu = cpu_seconds(daemon.proc.pid) - cpu0
            wall = time.perf_counter() - t0
            rss = rss_mib(daemon.proc.pid)
        finally:
            daemon.stop(timeout=120)
    pct = 100 * cpu / wall
    return [
        Figure(f"idle daemon, {templates} enabled templates, none due: CPU", backend, pct,
               "% of a core", f"< {IDLE_TARGET_PCT:g} %", pct < IDLE_TARGET_PCT,
               note=f"{cpu:.2f} s CPU in {wall:.0f} s"),
        Figure(f"idle daemon, {templates} enabled templates: RSS", backend, rss, "MiB"),
    ]


def measure(backends: list[str], jobs: int = 2000, templates: int = 10_000,
            idle: float = 60.0) -> list[Figure]:
    figures: list[Figure] = []
    for backend in backends:
        figures += queue_over_socket(backend, jobs)
        figures += cli_run_cost(backend)
        figures += idle_cost(backend, templates, idle)
    return figures


def main() -> None:
    from benchlib import print_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--templates", type=int, default=10_000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle [60]")
    add_backend_arg(parser)
    args = parser.parse_args()
    print_table(measure(backends_of(args.backend), args.jobs, args.templates, args.idle))


if __name__ == "__main__":
    main()
