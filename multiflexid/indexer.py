"""The output indexer: adds stored output to the text-search index in the background, so
indexing (about 1 µs per byte, on either database) never lengthens a job's start, end or
output writes.

It indexes a small batch at a time — SQLite through the writer (its one writing
connection), PostgreSQL in a transaction of its own — and then rests so that it takes
at most its *share* of the time: all of it while no job runs, a twentieth while jobs
run (they come first: the index catches up when they are done). Output it has not
reached yet is scanned by every search (store/search_*.py), so a search never misses
what it has not indexed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from multiflexid.aio import nap
from multiflexid.dbthread import DbThread
from multiflexid.health import Health
from multiflexid.store.search import OutputSearch

log = logging.getLogger(__name__)

BATCH_BYTES = 16 * 1024
# Seconds between looks for new output when all is indexed; the daemon wakes the
# indexer at once when a job ends (a search scans what the index has not reached yet)
IDLE_CHECK = 5.0
WOKEN_GAP = 0.5  # woken (jobs end), it looks at most this often: a look per batch of ends


def share_of(running: int) -> float:
    """The indexer's share of time with ``running`` jobs running."""
    return 1.0 if running == 0 else 0.05


class OutputIndexer:
    def __init__(self, db: DbThread, *, share: Callable[[], float],
                 health: Health | None = None, batch_bytes: int = BATCH_BYTES) -> None:
        self.db = db
        self.search = OutputSearch(db.db.dialect)
        self.share = share
        self.health = health or Health()
        self.batch_bytes = batch_bytes
        self.wake = asyncio.Event()  # set: look for output to index at once
        self.rows = 0  # indexed since start
        self.bytes = 0

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            try:
                looked = loop.time()
                if not await self.db.look(self.search.behind):
                    if await nap(self.wake, stopping, IDLE_CHECK):
                        await nap(asyncio.Event(), stopping,
                                  WOKEN_GAP - (loop.time() - looked))
                    continue
                started = loop.time()
                rows, size = await self._step()
                took = loop.time() - started
            except Exception as exc:  # the database may be out: say so, try again later
                self.health.failed("search index", exc)
                await nap(self.wake, stopping, 5.0)
                continue
            self.health.ok("search index")
            self.rows += rows
            self.bytes += size
            share = self.share()
            await nap(asyncio.Event(), stopping, took * (1 - share) / share)

    async def _step(self) -> tuple[int, int]:
        if self.search.sqlite:  # one writer: through it
            return await self.db.write(self.search.index_some, self.batch_bytes)

        def step() -> tuple[int, int]:
            with self.db.db.session() as s:
                return self.search.index_some(s, self.batch_bytes)

        return await asyncio.to_thread(step)
