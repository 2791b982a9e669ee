"""Helpers the benchmark scripts share (beside common.py): figures, tables, test data."""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import pct

from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.services import apps, companies, runtemplates
from multiflexid.store.orm import Application, Company

SCHEMA = ("https://raw.githubusercontent.com/VitexSoftware/php-vitexsoftware-multiflexi-core/"
          "refs/heads/main/schema/application.json")


def app_doc(name: str, executable: str, cmdparams: str = "",
            description: str = "benchmark app") -> dict[str, Any]:
    doc: dict[str, Any] = {"$schema": SCHEMA, "name": name, "description": description,
                           "executable": executable, "environment": {}}
    if cmdparams:
        doc["cmdparams"] = cmdparams
    return doc


@dataclass
class Figure:
    """One line of the results table."""

    what: str
    backend: str
    value: float
    unit: str
    target: str = ""  # e.g. "< 100 ms"
    ok: bool | None = None  # None: no target
    note: str = ""

    def shown_value(self) -> str:
        v = self.value
        if v != v:  # NaN
            return "n/a"
        if self.unit in ("x",):
            return f"{v:.2f}x"
        if abs(v) >= 100:
            return f"{v:,.0f} {self.unit}"
        if abs(v) >= 10:
            return f"{v:.1f} {self.unit}"
        return f"{v:.2f} {self.unit}"

    def mark(self) -> str:
        return "" if self.ok is None else ("✓" if self.ok else "✗")


def print_table(figures: Sequence[Figure], title: str = "") -> None:
    rows = [("figure", "backend", "value", "target", "", "note")]
    rows += [(f.what, f.backend, f.shown_value(), f.target, f.mark(), f.note) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    if title:
        print(f"\n{title}")
    for n, r in enumerate(rows):
        cells = [r[i].ljust(widths[i]) if i != 2 else r[i].rjust(widths[i])
                 for i in range(len(widths))]
        print("| " + " | ".join(cells) + " | " + r[-1])
        if n == 0:
            print("|-" + "-|-".join("-" * w for w in widths) + "-|-" + "-" * 4)


def print_markdown(figures: Sequence[Figure]) -> None:
    print("| Figure | Backend | Value | Target | Met | Note |")
    print("|---|---|---:|---|:-:|---|")
    for f in figures:
        print(f"| {f.what} | {f.backend} | {f.shown_value()} | {f.target} | {f.mark()} "
              f"| {f.note} |")


def med(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p99(values: Sequence[float]) -> float:
    return pct(list(values), 99)


def threaded_true_rate(n: int, threads: int = 2) -> float:
    """``subprocess.run(["true"])`` from ``threads`` threads at once (the parallel ceiling)."""
    left = [n]
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            subprocess.run(["true"], check=True)

    start = time.perf_counter()
    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return n / (time.perf_counter() - start)


def make_app_company(core: Core, doc: dict[str, Any], slug: str = "bench",
                     ) -> tuple[int, int]:
    """The app (imported through the real service) and a company; their ids."""
    definition, _ = parse_app(json.dumps(doc))
    with core.db.session() as s:
        app, _ = apps.upsert_app(s, definition)
        comp = companies.create_company(s, name=slug.title(), slug=slug)
        return app.id, comp.id


def make_templates(core: Core, app_id: int, company_id: int, count: int,
                   prefix: str = "t", **values: Any) -> list[int]:
    """``count`` run templates made through the real service (slow: for a few only)."""
    now = datetime.now(UTC)
    with core.db.session() as s:
        app = s.get(Application, app_id)
        comp = s.get(Company, company_id)
        assert app is not None and comp is not None
        return [runtemplates.create_runtemplate(s, app, comp, core.box, now,
                                                name=f"{prefix}{i}", **values).id
                for i in range(count)]


def proc_status(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` memory figure (``VmHWM``, ``VmRSS``) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def wait_until(cond: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not done after {timeout:g} s")
        time.sleep(interval)


def backends_of(choice: str) -> tuple[str, ...]:
    return ("sqlite", "postgresql") if choice == "both" else (choice,)


def add_backend_arg(parser: Any, default: str = "both") -> None:
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default=default,
                        help=f"database to measure on [default: {default}]")


__all__ = [
    "Figure", "add_backend_arg", "app_doc", "backends_of",
    "make_app_company", "make_templates", "med", "p99", "print_markdown", "print_table",
    "proc_status", "threaded_true_rate", "wait_until",
]
