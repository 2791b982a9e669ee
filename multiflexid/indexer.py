"""The output indexer (SQLite): adds stored output to the text-search index in the
background, so indexing (about 1 µs per byte in FTS5) never lengthens a job's start or
end.

It indexes a small batch at a time through the writer (one short transaction, a few
milliseconds) and then rests so that it takes at most its *share* of the time: all of it
while no job runs, a fifth while some run, a twentieth while every slot is taken (jobs
come first: the index catches up when they are done). Output it has not reached yet is
scanned by every search (store/search.py), so a search never misses what it has not
indexed. PostgreSQL keeps its trigram index itself and needs no indexer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from multiflexid.aio import nap
from multiflexid.dbthread import DbThread
from multiflexid.health import Health
from multiflexid.store import search

log = logging.getLogger(__name__)

BATCH_BYTES = 16 * 1024
IDLE_CHECK = 0.5  # seconds between looks for new output when all is indexed


def share_of(running: int, slots: int) -> float:
    """The indexer's share of time with ``running`` of ``slots`` jobs running."""
    if running == 0:
        return 1.0
    return 0.05 if running >= slots else 0.2


class OutputIndexer:
    def __init__(self, db: DbThread, *, share: Callable[[], float],
                 health: Health | None = None, batch_bytes: int = BATCH_BYTES) -> None:
        self.db = db
        self.share = share
        self.health = health or Health()
        self.batch_bytes = batch_bytes
        self.wake = asyncio.Event()  # output was written: look now
        self.rows = 0  # indexed since start
        self.bytes = 0

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            try:
                if not await self.db.read(search.behind):
                    await nap(self.wake, stopping, IDLE_CHECK)
                    continue
                started = loop.time()
                rows, size = await self.db.write(search.index_some, self.batch_bytes)
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
