"""Prometheus metrics: an opt-in HTTP listener (``metrics_listen``) serving the OpenMetrics
text through the official ``prometheus_client``.

Figures about work come from the database, by a custom collector, when Prometheus
scrapes (at most once per :data:`MIN_REFRESH` seconds; a scrape never touches the event
loop): job counters and durations (``services.monitoring.JobAggregates`` — they survive
a restart of the daemon, and every node of a cluster reports the same totals: aggregate
with ``max by (...)``, or scrape one node), the queue, each template's last success and
current tick, deadline counts, failed action deliveries, nodes' leases. Figures about
this process are live: running jobs, degraded and why, database write latency.

Labels stay bounded: company slug, application name, job state, template id, node,
component. No job ids.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session

import multiflexi
from multiflexid.services import monitoring as mon
from multiflexid.store.db import Database

log = logging.getLogger(__name__)

MIN_REFRESH = 2.0  # seconds between two reads of the database for a scrape
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                 10.0)


class ListenError(ValueError):
    """``metrics_listen`` is not host:port; the message names the setting."""


def parse_listen(value: str) -> tuple[str, int]:
    """``127.0.0.1:9471`` -> (host, port); ``[::1]:9471`` and ``:9471`` (every address)."""
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ListenError(f"metrics_listen: {value!r} is not host:port (e.g. 127.0.0.1:9471)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Live(Protocol):
    """What the daemon tells about itself right now."""

    node: str

    def running(self) -> int: ...

    def problems(self) -> dict[str, str]: ...


@dataclass
class Figures:
    """One read of the database, for one scrape."""

    at: datetime
    companies: dict[int, str]
    apps: dict[int, str]
    jobs: mon.Cells
    queued: int
    lag: float
    templates: list[mon.TemplateFigures]
    ticks_final: dict[tuple[int, int, str], int]
    ticks_missed: dict[tuple[int, int], int]
    deliveries_failed: dict[int, int]
    nodes: list[tuple[str, datetime, datetime, str]] = field(default_factory=list)


def read_figures(s: Session, now: datetime, jobs: mon.JobAggregates) -> Figures:
    companies, apps = mon.names(s)
    queued, lag = mon.queue_figures(s, now)
    final, missed = mon.tick_counts(s)
    return Figures(now, companies, apps, jobs.refresh(s, now), queued, lag,
                   mon.template_figures(s, now), final, missed, mon.failed_deliveries(s),
                   mon.node_figures(s))


class DaemonCollector(Collector):
    """Builds every metric family at scrape time."""

    def __init__(self, db: Database, live: Live,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db = db
        self.live = live
        self.clock = clock
        self.jobs = mon.JobAggregates()
        self._lock = threading.Lock()
        self._figures: Figures | None = None
        self._read_at = 0.0
        self._failing = False

    def figures(self) -> Figures | None:
        """The database's figures, fresh within :data:`MIN_REFRESH`; None while it cannot
        be read (the live figures are still served)."""
        with self._lock:
            if self._figures is not None and time.monotonic() - self._read_at < MIN_REFRESH:
                return self._figures
            try:
                with self.db.read_session() as s:
                    self._figures = read_figures(s, self.clock(), self.jobs)
            except Exception as exc:
                if not self._failing:
                    log.error("metrics: cannot read the database: %s",
                              str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                self._failing = True
                self._figures = None
                return None
            if self._failing:
                log.warning("metrics: reading the database again")
            self._failing = False
            self._read_at = time.monotonic()
            return self._figures

    def collect(self) -> Iterator[Any]:
        yield from self._live()
        figures = self.figures()
        up = GaugeMetricFamily("multiflexi_database_up",
                               "Whether the metrics could be read from the database")
        up.add_metric([], 1.0 if figures is not None else 0.0)
        yield up
        if figures is not None:
            yield from self._jobs(figures)
            yield from self._queue(figures)
            yield from self._templates(figures)
            yield from self._deadlines(figures)
            yield from self._cluster(figures)

    # --- this process ------------------------------------------------------------------

    def _live(self) -> Iterator[Any]:
        info = InfoMetricFamily("multiflexi_build", "The multiflexid version")
        info.add_metric([], {"version": multiflexi.__version__, "node": self.live.node})
        yield info
        running = GaugeMetricFamily("multiflexi_jobs_running",
                                    "Jobs this node runs now", labels=["node"])
        running.add_metric([self.live.node], float(self.live.running()))
        yield running
        problems = self.live.problems()
        degraded = GaugeMetricFamily(
            "multiflexi_daemon_degraded",
            "1 while something of this daemon fails (the database, a loop...), else 0",
            labels=["node"])
        degraded.add_metric([self.live.node], 1.0 if problems else 0.0)
        yield degraded
        failing = GaugeMetricFamily("multiflexi_daemon_problem",
                                    "1 for each part of this daemon that fails now",
                                    labels=["node", "component"])
        for component in sorted(problems):
            failing.add_metric([self.live.node, component], 1.0)
        yield failing

    # --- from the database ----------------------------------------------------------------

    def _jobs(self, f: Figures) -> Iterator[Any]:
        total = CounterMetricFamily("multiflexi_jobs", "Ended jobs by company, application "
                                    "and final state (from the database)",
                                    labels=["company", "app", "state"])
        duration = HistogramMetricFamily(
            "multiflexi_job_duration_seconds",
            "How long ended jobs ran, begin to end (from the database)",
            labels=["company", "app"])
        by_app: dict[tuple[int, int], mon.JobCell] = {}
        for (company, app, state), cell in sorted(f.jobs.items()):
            total.add_metric([_name(f.companies, company), _name(f.apps, app), state],
                             float(cell.count))
            by_app.setdefault((company, app), mon.JobCell()).add(cell)
        for (company, app), cell in sorted(by_app.items()):
            buckets = [(_le(b), float(n)) for b, n in zip(mon.DURATION_BUCKETS, cell.buckets,
                                                           strict=True)]
            buckets.append(("+Inf", float(cell.timed)))
            duration.add_metric([_name(f.companies, company), _name(f.apps, app)], buckets,
                                cell.seconds)
        yield total
        yield duration

    def _queue(self, f: Figures) -> Iterator[Any]:
        queued = GaugeMetricFamily("multiflexi_jobs_queued", "Jobs waiting in the queue")
        queued.add_metric([], float(f.queued))
        yield queued
        lag = GaugeMetricFamily(
            "multiflexi_queue_lag_seconds",
            "How long the oldest job that could start now has waited past its due time")
        lag.add_metric([], f.lag)
        yield lag

    def _templates(self, f: Figures) -> Iterator[Any]:
        labels = ["runtemplate_id", "company", "app"]
        info = InfoMetricFamily("multiflexi_runtemplate", "A run template's name and schedule",
                                labels=labels)
        success = GaugeMetricFamily(
            "multiflexi_runtemplate_last_success_timestamp_seconds",
            "When the template's last successful job ended (Unix time)", labels=labels)
        missed = GaugeMetricFamily(
            "multiflexi_runtemplate_deadline_missed",
            "1 when the template's current tick is past its deadline without a success in "
            "time (missed, failed, or still not done), else 0", labels=labels)
        late = GaugeMetricFamily(
            "multiflexi_runtemplate_deadline_late",
            "1 when the template's current tick was done after its deadline, else 0",
            labels=labels)
        for t in f.templates:
            values = [str(t.id), _name(f.companies, t.company_id), _name(f.apps, t.app_id)]
            info.add_metric(values, {"name": t.name, "interv": t.interv,
                                     "active": "true" if t.active else "false"})
            if t.last_success is not None:
                success.add_metric(values, t.last_success.timestamp())
            if t.tick is not None:
                missed.add_metric(values, 1.0 if t.tick["late"] else 0.0)
                late.add_metric(values, 1.0 if t.tick["state"] == "fulfilled_late" else 0.0)
        yield from (info, success, missed, late)

    def _deadlines(self, f: Figures) -> Iterator[Any]:
        settled = CounterMetricFamily(
            "multiflexi_deadline_ticks", "Ticks done (state fulfilled or fulfilled_late) by "
            "company and application", labels=["company", "app", "state"])
        for (company, app, state), n in sorted(f.ticks_final.items()):
            settled.add_metric([_name(f.companies, company), _name(f.apps, app), state],
                               float(n))
        yield settled
        missed = CounterMetricFamily(
            "multiflexi_deadline_misses", "Ticks found not done by their deadline (also "
            "those done late afterwards)", labels=["company", "app"])
        for (company, app), n in sorted(f.ticks_missed.items()):
            missed.add_metric([_name(f.companies, company), _name(f.apps, app)], float(n))
        yield missed
        failed = CounterMetricFamily(
            "multiflexi_action_deliveries_failed",
            "Actions after jobs (webhooks, notifications...) that failed for good",
            labels=["company"])
        for company, n in sorted(f.deliveries_failed.items()):
            failed.add_metric([_name(f.companies, company)], float(n))
        yield failed

    def _cluster(self, f: Figures) -> Iterator[Any]:
        age = GaugeMetricFamily("multiflexi_node_heartbeat_age_seconds",
                                "Seconds since each node last renewed its lease",
                                labels=["node", "state"])
        remaining = GaugeMetricFamily(
            "multiflexi_node_lease_remaining_seconds",
            "Seconds until each node's lease runs out (negative: it ran out)",
            labels=["node", "state"])
        for name, beat, until, state in f.nodes:
            age.add_metric([name, state], max(0.0, (f.at - beat).total_seconds()))
            remaining.add_metric([name, state], (until - f.at).total_seconds())
        yield age
        yield remaining


def _name(names: dict[int, str], key: int) -> str:
    return names.get(key, f"#{key}")


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{bound:.1f}"


class MetricsServer:
    """The HTTP listener (a daemon thread of prometheus_client) and its registry."""

    def __init__(self, listen: str, collector: DaemonCollector) -> None:
        self.host, self.port = parse_listen(listen)
        self.collector = collector
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.write_seconds = Histogram(
            "multiflexi_db_write_seconds",
            "How long each write transaction of this daemon took (its commit included)",
            buckets=WRITE_BUCKETS, registry=self.registry)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(self.port, self.host,
                                                       registry=self.registry)
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
