"""One job printing 200 MB: the daemon's peak memory growth and its capture rate.

The job is a shell script printing BYTES on stdout: ``base64 -w 76 /dev/urandom | head -c
BYTES`` (77-byte lines that do not compress) or, with ``--pattern x``, ``yes <99 x> |
head -c BYTES`` (100-byte lines that PostgreSQL's TOAST compresses to almost nothing).
The daemon runs it with the per-job output cap (``MULTIFLEXI_OUTPUT_CAP_BYTES``) raised
above BYTES, so all of it is captured into the database.

- peak RSS growth: the daemon's ``VmHWM`` is reset (``/proc/PID/clear_refs``, 5) when it
  is idle, just before the job, and read after; growth = that peak minus ``VmRSS``
  before (target < 64 MB). Where the reset is not allowed, ``VmRSS`` sampled every 20 ms.
- capture rate: BYTES / (job ``end`` - job ``begin``), in MB/s (1 MB = 10^6 bytes),
  against the same generator piped into ``cat > file`` on the same disk, in the same run;
  also BYTES / (time until every byte is in the database - ``begin``).
- database growth: SQLite file plus its WAL, or ``pg_database_size``, before and after.

    .venv/bin/python bench/output_volume.py [--mb 200] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

from benchlib import (
    Figure,
    add_backend_arg,
    app_doc,
    backends_of,
    make_app_company,
    make_templates,
    print_table,
    proc_status,
    wait_until,
)
from common import Install, install

from multiflexid.store.orm import FINAL_STATES, Job

RSS_TARGET_MB = 64.0
LINE = "x" * 99


GENERATORS = {
    # 77-byte lines of base64 of random bytes: what PostgreSQL's TOAST cannot compress away
    "random": "base64 -w 76 /dev/urandom | head -c \"$1\"",
    # 100-byte lines of one letter: compresses to almost nothing in PostgreSQL
    "x": f"yes '{LINE}' | head -c \"$1\"",
}


def write_generator(root: Path, pattern: str) -> Path:
    script = root / "print-bytes.sh"
    script.write_text(f"#!/bin/sh\n# prints $1 bytes of output\n{GENERATORS[pattern]}\n")
    script.chmod(0o755)
    return script


def cat_rate(script: Path, nbytes: int, target: Path) -> float:
    """MB/s of the same generator piped through ``cat`` into a file."""
    start = time.perf_counter()
    subprocess.run(["sh", "-c", f"'{script}' {nbytes} | cat > '{target}'"], check=True)
    elapsed = time.perf_counter() - start
    assert target.stat().st_size == nbytes
    target.unlink()
    return nbytes / 1e6 / elapsed


def db_bytes(inst: Install) -> int:
    if inst.cluster is not None:
        return int(inst.cluster.psql("SELECT pg_database_size('postgres')").strip())
    db = inst.root / "data" / "multiflexi.db"
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:  # the WAL's pages into the file, so the file's size is the data's
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = proc_status(pid, "VmRSS")
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            try:
                self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))
            except (FileNotFoundError, ProcessLookupError):
                return


def run(backend: str, nbytes: int, pattern: str = "random") -> dict[str, float]:
    with install(backend, fsync=True) as inst:
        script = write_generator(inst.root, pattern)
        core = inst.core()
        app_id, comp_id = make_app_company(core, app_doc("print-bytes", str(script),
                                                          str(nbytes)))
        rt_id = make_templates(core, app_id, comp_id, 1)[0]
        baseline = cat_rate(script, nbytes, inst.root / "cat.out")
        daemon = inst.daemon(MULTIFLEXI_OUTPUT_CAP_BYTES=str(nbytes + (1 << 20)),
                             MULTIFLEXI_MAX_PARALLEL="1")
        daemon.start()
        try:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            time.sleep(1.0)  # idle
            db_before = db_bytes(inst)
            rss_before = proc_status(pid, "VmRSS")
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
                exact = True
            except OSError:
                exact = False
            sampler = RssSampler(pid)
            sampler.start()
            job_id = daemon.call("runtemplate.run", id=rt_id)["id"]

            def stored() -> bool:
                with core.db.read_session() as s:
                    job = s.get(Job, job_id)
                    assert job is not None
                    return job.state in FINAL_STATES and job.output_bytes >= nbytes

            wait_until(stored, 3600, "the big job's output", interval=0.1)
            t_stored = time.time()
            sampler.stop.set()
            sampler.join()
            peak = proc_status(pid, "VmHWM") if exact else sampler.peak
            with core.db.read_session() as s:
                job = s.get(Job, job_id)
                assert job is not None and job.begin is not None and job.end is not None
                state, begin, end = job.state, job.begin, job.end
                out_bytes, dropped = job.output_bytes, job.output_dropped
        finally:
            daemon.stop()
            core.close()
        db_after = db_bytes(inst)
    assert state == "succeeded" and out_bytes == nbytes and dropped == 0, (
        state, out_bytes, dropped)
    seconds = (end - begin).total_seconds()
    return {
        "rss_growth_mb": (peak - rss_before) / 2**20,
        "rss_before_mb": rss_before / 2**20,
        "exact": float(exact),
        "rate": nbytes / 1e6 / seconds,
        "seconds": seconds,
        "stored_rate": nbytes / 1e6 / (t_stored - begin.timestamp()),
        "cat_rate": baseline,
        "db_growth_mb": (db_after - db_before) / 1e6,
    }


def measure(backends: tuple[str, ...] = ("sqlite", "postgresql"), mb: int = 200,
            pattern: str = "random", verbose: bool = True) -> list[Figure]:
    nbytes = mb * 1_000_000
    figures = []
    for backend in backends:
        r = run(backend, nbytes, pattern)
        how = "VmHWM" if r["exact"] else "sampled VmRSS"
        if verbose:
            print(f"  {backend}: {mb} MB in {r['seconds']:.1f} s = {r['rate']:.1f} MB/s "
                  f"(all stored: {r['stored_rate']:.1f} MB/s; cat into a file: "
                  f"{r['cat_rate']:.0f} MB/s); peak RSS growth {r['rss_growth_mb']:.1f} MB "
                  f"({how}, idle RSS {r['rss_before_mb']:.0f} MB); database grew "
                  f"{r['db_growth_mb']:.0f} MB", flush=True)
        figures.append(Figure(f"{mb} MB job: daemon peak RSS growth", backend,
                              r["rss_growth_mb"], "MiB", f"< {RSS_TARGET_MB:g} MiB",
                              r["rss_growth_mb"] < RSS_TARGET_MB,
                              note=f"{how}; idle RSS {r['rss_before_mb']:.0f} MiB"))
        figures.append(Figure(f"{mb} MB job: capture rate (begin → end)", backend,
                              r["rate"], "MB/s",
                              note=f"{r['rate'] / r['cat_rate']:.3f}x cat into a file "
                                   f"({r['cat_rate']:.0f} MB/s); all stored "
                                   f"{r['stored_rate']:.1f} MB/s"))
        figures.append(Figure(f"{mb} MB job: database growth", backend, r["db_growth_mb"],
                              "MB", note=f"{r['db_growth_mb'] / mb:.2f}x the output"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="What is measured: see the module docstring.")
    parser.add_argument("--mb", type=int, default=200, help="output of the job, MB [200]")
    parser.add_argument("--pattern", choices=sorted(GENERATORS), default="random",
                        help="random: 77-byte lines of base64 noise; x: 100-byte lines of "
                             "x (PostgreSQL compresses it away) [random]")
    add_backend_arg(parser)
    args = parser.parse_args()
    figures = measure(backends_of(args.backend), args.mb, args.pattern)
    print_table(figures, "a job printing a lot (fsync on)")


if __name__ == "__main__":
    os.environ.setdefault("MULTIFLEXI_LOG_TARGET", "stderr")
    main()
