"""Zabbix, sender side: the end of every job pushed to a Zabbix server or proxy, as the
original MultiFlexi reports it — trapper item ``job-[<company>-<app code>-<template id>]``
of the company's Zabbix host, a JSON value (``phase: jobDone`` with the job's ids, names,
times, exit code and its meaning) — with the official ``zabbix_utils`` library.

Where to: the company's ``zabbix_server`` or else the global ``zabbix_server`` setting;
under the company's ``zabbix_host`` or else the ``zabbix_host`` setting or the node's
name. A job's end is only queued in memory by the daemon's listener (sends never delay
jobs); a task sends the queue in batches and retries what could not be delivered with a
growing pause (up to a minute), keeping the value's own time. What a server refuses (no
such host or item) is said once per item and not retried. At most
:data:`MAX_PENDING` values wait; beyond that the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.settings import Settings
from multiflexid.aio import nap
from multiflexid.domain.jobstate import JobEnded
from multiflexid.store.db import Database
from multiflexid.store.orm import AppExitCode, Application, Company, Job, RunTemplate

log = logging.getLogger(__name__)

MAX_PENDING = 10_000
BATCH = 250
TIMEOUT = 5  # seconds per connection to a server
MAX_PAUSE = 60.0
# The seconds of each interval code (upstream Scheduler::codeToSeconds; "c" and "n": 0).
INTERVAL_SECONDS = {"i": 60, "h": 3600, "d": 86400, "w": 604800, "m": 2629743,
                    "y": 31556926, "c": 0, "n": 0}
_TIME = "%Y-%m-%d %H:%M:%S"
_NOT_IN_KEY = re.compile(r"[^A-Za-z0-9._-]+")


def app_code(name: str) -> str:
    """The application's code in item keys: its name with every run of characters other
    than letters, digits, ``.``, ``_`` and ``-`` as one ``_`` (ours have no separate code;
    a key parameter may not hold ``,`` or ``]``)."""
    return _NOT_IN_KEY.sub("_", name).strip("_") or "app"


def item_key(company_slug: str, app_name: str, runtemplate_id: int) -> str:
    return f"job-[{company_slug}-{app_code(app_name)}-{runtemplate_id}]"


def parse_server(value: str) -> tuple[str, int]:
    """``zabbix.example`` or ``zabbix.example:10051`` or ``[::1]:10051``."""
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and (not host.count(":") or host.startswith("[")):
        return host.strip("[]"), int(port)
    return text.strip("[]"), 10051


@dataclass(frozen=True)
class Value:
    """One item value waiting to be sent."""

    server: str  # host:port
    host: str
    key: str
    value: str
    clock: int


def _fmt(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime(_TIME) if moment else None


def job_value(s: Session, job_id: int, settings: Settings) -> Value | None:
    """The value a job's end is reported as, or None when nobody is to be told."""
    job = s.get(Job, job_id)
    if job is None or job.runtemplate_id is None:
        return None
    company = s.get(Company, job.company_id)
    app = s.get(Application, job.app_id)
    rt = s.get(RunTemplate, job.runtemplate_id)
    if company is None or app is None:
        return None
    server = company.zabbix_server or settings.zabbix_server
    if not server:
        return None
    meaning = s.scalar(select(AppExitCode.description).where(
        AppExitCode.app_id == app.id, AppExitCode.code == job.exitcode)) \
        if job.exitcode is not None else None
    duration = (job.end - job.begin).total_seconds() if job.begin and job.end else None
    payload: dict[str, Any] = {
        "phase": "jobDone",
        "job_id": job.id,
        "state": job.state,
        "exitcode": job.exitcode,
        "exitcode_description": meaning or "",
        "app_id": app.id, "app_name": app.name, "app_code": app_code(app.name),
        "version": app.version,
        "company_id": company.id, "company_name": company.name, "company_code": company.slug,
        "runtemplate_id": job.runtemplate_id, "runtemplate_name": job.runtemplate_name,
        "executor": job.executor, "schedule_type": job.schedule_type,
        "scheduled": _fmt(job.schedule), "begin": _fmt(job.begin), "end": _fmt(job.end),
        "timezone": "UTC", "duration": round(duration, 3) if duration is not None else None,
        "interval": (rt.cron if rt and rt.interv == "c" else rt.interv) if rt else None,
        "interval_seconds": INTERVAL_SECONDS.get(rt.interv, 0) if rt else 0,
        "launched_by": job.launched_by, "pid": job.pid, "node": job.node,
        "attempt": job.attempt, "reason": job.reason,
        "data": ({"status": job.report_status, "message": job.report_message,
                  "metrics": job.report_metrics} if job.report_status else None),
    }
    address, port = parse_server(server)
    host = company.zabbix_host or settings.zabbix_host or settings.node
    end = job.end or datetime.now(UTC)
    where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    return Value(where, host, item_key(company.slug, app.name, job.runtemplate_id),
                 json.dumps(payload, ensure_ascii=False), int(end.timestamp()))


Send = Callable[[str, list[Value]], Any]  # async: (server, values) -> (processed, failed)


async def send_with_zabbix_utils(server: str, values: list[Value]) -> tuple[int, int]:
    """One batch to one server or proxy through zabbix_utils' asynchronous sender."""
    from zabbix_utils import AsyncSender, ItemValue

    address, port = parse_server(server)
    sender = AsyncSender(server=address, port=port, timeout=TIMEOUT)
    response = await sender.send([ItemValue(v.host, v.key, v.value, v.clock) for v in values])
    return int(response.processed), int(response.failed)


class ZabbixReporter:
    def __init__(self, settings: Settings, db: Database, *, send: Send = send_with_zabbix_utils,
                 refresh: float = 30.0) -> None:
        self.settings = settings
        self.db = db
        self.send = send
        self.refresh = refresh
        self.pending: deque[int | Value] = deque()
        self.wake = asyncio.Event()
        self.dropped = 0
        self.sent = 0
        self.refused = 0
        self._companies: set[int] = set()  # companies with a server of their own
        self._companies_at = -1e9
        self._refused_keys: set[str] = set()
        self._failing_since: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.zabbix_server) or bool(self._companies)

    def ended(self, event: JobEnded) -> None:
        """A job's end was committed (a listener of the daemon: only queues it)."""
        if event.runtemplate_id is None:
            return
        if not self.settings.zabbix_server and event.company_id not in self._companies:
            return
        self.pending.append(event.job_id)
        if len(self.pending) > MAX_PENDING:
            self.pending.popleft()
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("zabbix: %d value(s) dropped: more than %d waited to be sent",
                            self.dropped, MAX_PENDING)
        self.wake.set()

    async def run(self, stopped: asyncio.Event) -> None:
        pause = 1.0
        while not stopped.is_set():
            await self._refresh_companies()
            if not self.pending:
                await nap(self.wake, stopped, self.refresh)
                continue
            ok = await self.flush()
            if ok:
                pause = 1.0
                continue
            await nap(asyncio.Event(), stopped, pause)  # new values do not cut it short
            pause = min(MAX_PAUSE, pause * 2)
        if self.pending:  # the last ones, briefly
            try:
                await asyncio.wait_for(self.flush(), TIMEOUT)
            except TimeoutError:
                pass
            if self.pending:
                log.warning("zabbix: %d value(s) not sent: multiflexid stopped",
                            len(self.pending))

    async def flush(self) -> bool:
        """Send what waits; False when a server could not be reached (retried later)."""
        batch: list[Value] = []
        while self.pending and len(batch) < BATCH:
            item = self.pending.popleft()
            if isinstance(item, int):
                value = await asyncio.to_thread(self._value, item)
                if value is None:
                    continue
                item = value
            batch.append(item)
        by_server: dict[str, list[Value]] = {}
        for value in batch:
            by_server.setdefault(value.server, []).append(value)
        ok = True
        for server, values in by_server.items():
            try:
                processed, failed = await self.send(server, values)
            except Exception as exc:  # unreachable, timed out, not a Zabbix: later again
                self.pending.extendleft(reversed(values))
                ok = False
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.error("zabbix: cannot send to %s: %s (retrying; %d value(s) wait)",
                              server, _one_line(exc), len(self.pending))
                continue
            self.sent += processed
            if failed:
                self._refused(server, values, failed)
        if ok and self._failing_since is not None:
            log.warning("zabbix: sending again after %.0f s", time.monotonic()
                        - self._failing_since)
            self._failing_since = None
        return ok

    def _value(self, job_id: int) -> Value | None:
        with self.db.read_session() as s:
            return job_value(s, job_id, self.settings)

    def _refused(self, server: str, values: list[Value], failed: int) -> None:
        self.refused += failed
        new = [v.key for v in values if v.key not in self._refused_keys]
        self._refused_keys.update(new)
        if new:
            log.warning("zabbix: %s refused %d value(s) (is there a host %r with trapper "
                        "item(s) %s?)", server, failed, values[0].host, ", ".join(new[:5]))

    async def _refresh_companies(self) -> None:
        if time.monotonic() - self._companies_at < self.refresh:
            return
        self._companies_at = time.monotonic()

        def read() -> set[int]:
            with self.db.read_session() as s:
                return set(s.scalars(select(Company.id).where(
                    Company.zabbix_server.is_not(None), Company.zabbix_server != "")))

        try:
            self._companies = await asyncio.to_thread(read)
        except Exception as exc:
            log.debug("zabbix: cannot read the companies: %s", _one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
