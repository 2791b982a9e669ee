"""The output indexer (SQLite): adds stored output to the text-search index in the
background, so indexing (about 1 µs per byte in FTS5) never lengthens a job's start or
end.

It indexes a small batch at a time through the writer (one short transaction, a few
milliseconds) and, while jobs run or wait, rests four times as long as the batch took:
at most a fifth of the writer's time goes to the index while the daemon is busy, all of
it while idle. Output it has not reached yet is scanned by every search (store/search.py),
so a search never misses what it has not indexed. PostgreSQL keeps its trigram index
itself and needs no indexer.
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
BUSY_SHARE = 0.2


class OutputIndexer:
    def __init__(self, db: DbThread, *, busy: Callable[[], bool], health: Health | None = None,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self.db = db
        self.busy = busy
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
            rest = took * (1 - BUSY_SHARE) / BUSY_SHARE if self.busy() else 0.0
            await nap(asyncio.Event(), stopping, rest)
