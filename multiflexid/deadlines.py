"""The deadline tracker: the daemon's task that starts tracking each tick of the templates
with a deadline and finds the ticks that missed it.

It wakes at the next thing to do (a tick to start tracking, an open tick's deadline) and
at least every ``max_sleep`` seconds (templates changed by the CLI). A daemon that was
down past deadlines records those misses on its first sweep. Several nodes may sweep at
once: the store's statements make each change once (``store.deadlines``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from multiflexid.aio import nap
from multiflexid.dbthread import DbThread
from multiflexid.domain.deadline import TickSettled
from multiflexid.health import Health
from multiflexid.store.deadlines import TickBook

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class DeadlineTracker:
    def __init__(self, db: DbThread, book: TickBook, *, health: Health | None = None,
                 clock: Callable[[], datetime] = _utcnow, max_sleep: float = 5.0) -> None:
        self.db = db
        self.book = book
        self.health = health or Health()
        self.clock = clock
        self.max_sleep = max_sleep
        self.wake = asyncio.Event()

    async def sweep(self) -> tuple[list[TickSettled], datetime | None]:
        now = self.clock()

        def work(s: object) -> tuple[list[TickSettled], datetime | None]:
            events = self.book.sweep(s, now)  # type: ignore[arg-type]
            return events, self.book.next_wakeup(s)  # type: ignore[arg-type]

        events, nxt = await self.db.write(work)
        for event in events:
            log.warning("run template %s: tick %s missed its deadline %s",
                        event.runtemplate_id, event.tick.isoformat(),
                        event.deadline.isoformat(), extra=event.fields())
        return events, nxt

    async def run(self, stopping: asyncio.Event) -> None:
        woken = True
        while not stopping.is_set():
            try:
                if not woken:  # a timed look: a read first; a sweep (a write) only if due
                    nxt = await self.db.look(self.book.next_wakeup)
                    if nxt is None or nxt > self.clock():
                        woken = await nap(self.wake, stopping, self._sleep(nxt))
                        continue
                _events, nxt = await self.sweep()
            except Exception as exc:  # the database may be down: keep going, say so
                self.health.failed("deadlines", exc)
                await nap(self.wake, stopping, 2.0)
                woken = True
                continue
            self.health.ok("deadlines")
            woken = await nap(self.wake, stopping, self._sleep(nxt))

    def _sleep(self, nxt: datetime | None) -> float:
        if nxt is None:
            return self.max_sleep
        return max(0.0, min(self.max_sleep, (nxt - self.clock()).total_seconds() + 0.05))
