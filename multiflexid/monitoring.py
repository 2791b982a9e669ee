"""What the daemon offers monitoring, each part when configured: the Prometheus listener
(``metrics_listen``, :mod:`multiflexid.metrics`) and the Zabbix sender (``zabbix_server``
or a company's own, :mod:`multiflexid.zabbix`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from multiflexi.errors import MultiFlexiError
from multiflexid.metrics import DaemonCollector, ListenError, MetricsServer
from multiflexid.zabbix import ZabbixReporter


class MonitoringError(MultiFlexiError):
    """A monitoring setting cannot be used; the message names it."""


class _Live:
    """The running daemon as the metrics see it."""

    def __init__(self, daemon: Any) -> None:
        self._daemon = daemon
        self.node = str(daemon.settings.node)

    def running(self) -> int:
        return len(self._daemon.dispatcher.executing)

    def problems(self) -> dict[str, str]:
        d = self._daemon
        problems = dict(d.health.problems)
        if getattr(d, "hub", None) is not None and d.hub.failing_since is not None:
            problems.setdefault("output", "output writes failing")
        if d.cluster.lease_problem:
            problems["lease"] = d.cluster.lease_problem
        return problems


class Monitoring:
    def __init__(self, daemon: Any) -> None:
        """Binds the metrics listener now (before the daemon says it is ready), so a port
        in use is a start-up error, not a silent absence."""
        settings = daemon.settings
        self.metrics: MetricsServer | None = None
        if settings.metrics_listen:
            try:
                self.metrics = MetricsServer(settings.metrics_listen,
                                             DaemonCollector(daemon.core.db, _Live(daemon)))
            except ListenError as exc:
                raise MonitoringError(str(exc)) from None
            try:
                self.metrics.start()
            except OSError as exc:
                raise MonitoringError(
                    f"metrics_listen: cannot listen on {settings.metrics_listen}: "
                    f"{exc.strerror or exc}") from None
            daemon.db.on_commit_seconds = self.metrics.write_seconds.observe
        self.zabbix = ZabbixReporter(settings, daemon.core.db)
        daemon.ended_listeners.append(self.zabbix.ended)

    def start(self, tg: asyncio.TaskGroup, stopped: asyncio.Event) -> None:
        tg.create_task(self.zabbix.run(stopped), name="zabbix")
        if self.metrics is not None:
            tg.create_task(self._close_metrics(stopped), name="metrics")
            # The first read aggregates the whole job history (seconds for millions of
            # jobs): do it now, so that Prometheus's first scrape does not time out.
            tg.create_task(asyncio.to_thread(self.metrics.collector.figures),
                           name="metrics-warm-up")

    async def _close_metrics(self, stopped: asyncio.Event) -> None:
        await stopped.wait()
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.metrics.stop)
