"""Every benchmark of bench/, one after the other, and one table of figures with targets.

Each figure is measured against a reference taken in the same run (ratios against the
serial ``subprocess.run(["true"])`` loop, ``cat`` into a file...); see each script's
``--help``. The sizes are those the targets are defined at (100k templates, 10k due,
200 MB of output, 1M jobs, 1M jobs with output to search), with modest repetition counts;
``--quick`` shrinks everything for a smoke run (its ✓/✗ then say little). A section that
fails is reported in the table and makes the exit status 1; a missed target does not.

    .venv/bin/python bench/run_all.py [--quick] [--only latency,history] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import compare_queues
import history_query
import job_search
import latency
import metrics_scrape
import output_volume
import queueing
import scheduler_tick
from benchlib import Figure, backends_of, print_markdown, print_table

from tests.support.pgcluster import pg_bindir

SECTIONS = ("dispatch", "latency", "scheduler", "queueing", "output", "history", "metrics",
            "search")


def _versions() -> str:
    out = []
    for pkg in ("procrastinate", "pgqueuer", "asyncpg", "sqlalchemy", "psycopg"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} missing")
    return ", ".join(out)


def _postgres_version() -> str:
    try:
        return subprocess.run([str(pg_bindir() / "postgres"), "--version"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except Exception as exc:
        return f"PostgreSQL: {exc}"


def header() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
            f"{os.cpu_count()} CPUs, load {load}; Python {platform.python_version()}; "
            f"{_postgres_version()}; {_versions()}")


def plan(args: argparse.Namespace) -> dict[str, Callable[[], list[Figure]]]:
    q = args.quick
    backends = backends_of(args.backend)
    return {
        "dispatch": lambda: compare_queues.measure(
            jobs=500 if q else args.jobs, repeat=1 if q else args.repeat, parallel=2,
            sqlite="sqlite" in backends),
        "latency": lambda: latency.measure(backends, samples=30 if q else args.samples),
        "scheduler": lambda: scheduler_tick.measure(
            backends, templates=20_000 if q else 100_000, due=2_000 if q else 10_000,
            repeat=50 if q else 200),
        "queueing": lambda: queueing.measure(
            backends, jobs=500 if q else 2000, templates=2000 if q else 10_000,
            idle=10 if q else 60),
        "output": lambda: output_volume.measure(backends, mb=20 if q else 200),
        "history": lambda: history_query.measure(backends, jobs=100_000 if q else 1_000_000),
        "metrics": lambda: metrics_scrape.measure(backends, jobs=100_000 if q else 1_000_000,
                                                  reads=10 if q else 30),
        "search": lambda: job_search.measure(backends, jobs=100_000 if q else 1_000_000,
                                             searches_=50 if q else 200),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Sizes and methods: see each script's --help.")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run [{','.join(SECTIONS)}]")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both",
                        help="databases (the peers run on PostgreSQL anyway) [both]")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per dispatch run [2000]")
    parser.add_argument("--repeat", type=int, default=3,
                        help="dispatch repetitions, medians reported [3]")
    parser.add_argument("--samples", type=int, default=100,
                        help="latency samples per way and backend [100]")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the table as Markdown (for the README)")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(sorted(unknown))}")
    if "dispatch" in only:
        try:
            import asyncpg  # noqa: F401
            import pgqueuer  # noqa: F401
            import procrastinate  # noqa: F401
        except ImportError as exc:
            sys.exit(f"run_all: {exc.name} is missing: .venv/bin/pip install -e '.[bench]' "
                     "'procrastinate>=3.10' 'pgqueuer[asyncpg]>=1.6' (or make bench)")
    started = header()
    print(started, flush=True)
    figures: list[Figure] = []
    failed = []
    steps = plan(args)
    t0 = time.perf_counter()
    for name in only:
        print(f"\n== {name} ==", flush=True)
        t = time.perf_counter()
        try:
            got = steps[name]()
        except Exception as exc:
            traceback.print_exc()
            failed.append(name)
            figures.append(Figure(f"{name}: FAILED ({type(exc).__name__}: {exc})"[:120], "-",
                                  float("nan"), "", ok=False))
            continue
        figures.extend(got)
        print_table(got)
        print(f"({name}: {time.perf_counter() - t:.0f} s)", flush=True)
    print(f"\n{'=' * 30} all figures {'=' * 30}\n{started}")
    print(f"finished in {time.perf_counter() - t0:.0f} s, load now "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}" + (" (--quick)" if args.quick
                                                                 else ""))
    print_table(figures)
    missed = [f for f in figures if f.ok is False]
    print(f"\ntargets: {sum(1 for f in figures if f.ok)} met, {len(missed)} missed"
          + "".join(f"\n  ✗ {f.what} ({f.backend}): {f.shown_value()}, target {f.target}"
                    for f in missed))
    if args.markdown:
        print()
        print_markdown(figures)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
