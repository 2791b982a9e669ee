"""The scheduler: turns due run templates into jobs.

Each tick asks the database only for templates whose ``next_schedule`` has come (an
index range scan), so its cost does not grow with the templates that are not due. The
unique (template, tick) constraint makes "one job per tick" a database guarantee.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from multiflexid.aio import nap
from multiflexid.dbthread import DbThread
from multiflexid.health import Health
from multiflexid.services import lifecycle
from multiflexid.store.transitions import JobTransitions

log = logging.getLogger(__name__)

# Templates changed by others (the CLI writes the database directly) are noticed within
# this — a look that reads only if the database changed (SQLite); on PostgreSQL such a
# change NOTIFYs the daemon at once (a trigger), and the daemon stretches it meanwhile.
MAX_SLEEP = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    def __init__(
        self,
        db: DbThread,
        transitions: JobTransitions,
        on_jobs: Callable[[list[int]], None],
        *,
        clock: Callable[[], datetime] = _utcnow,
        batch: int = 1000,
        max_sleep: float = MAX_SLEEP,
        health: Health | None = None,
    ) -> None:
        self.health = health or Health()
        self.max_sleep = max_sleep
        self.poll: Callable[[], float] = lambda: self.max_sleep
        self.db = db
        self.tx = transitions
        self.on_jobs = on_jobs
        self.clock = clock
        self.batch = batch
        self.wake = asyncio.Event()
        self.last_tick: datetime | None = None

    async def tick(self) -> lifecycle.TickResult:
        now = self.clock()
        result = await self.db.write(lifecycle.tick, self.tx, now, self.batch)
        self.last_tick = now
        if result.created:
            log.info("scheduled %d job(s)", len(result.created))
            self.on_jobs(result.created)
        return result

    async def run(self, stopping: asyncio.Event) -> None:
        woken = True
        while not stopping.is_set():
            try:
                if not woken:  # a timed poll: a read first; a tick (a write) only if due
                    nxt = await self.db.look(lifecycle.next_tick)
                    if nxt is None or nxt > self.clock():
                        self.health.ok("scheduler")
                        woken = await nap(self.wake, stopping, self._sleep(nxt))
                        continue
                result = await self.tick()
            except Exception as exc:  # the database may be down: keep going, say so
                self.health.failed("scheduler", exc)
                await nap(self.wake, stopping, 2.0)
                woken = True
                continue
            self.health.ok("scheduler")
            if len(result.created) + len(result.skipped) >= self.batch:
                continue  # more are due right now
            woken = await nap(self.wake, stopping, self._sleep(result.next_due))

    def _sleep(self, next_due: datetime | None) -> float:
        poll = self.poll()
        if next_due is None:
            return poll
        return max(0.0, min(poll, (next_due - self.clock()).total_seconds()))

