"""Running blocking database work from the event loop.

All writes go through one thread, in order (SQLite has one writer anyway, and batching
beats contention on PostgreSQL too); reads use a small pool of their own so a long
history query never delays a job's start or end.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from multiflexid.store.db import Database

T = TypeVar("T")


class DbThread:
    def __init__(self, db: Database, readers: int = 4) -> None:
        self.db = db
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="mf-db-write")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="mf-db-read")

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in one write transaction."""
        def job() -> T:
            with self.db.session() as s:
                return fn(s, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._writer, job)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in a read-only transaction."""
        def job() -> T:
            with self.db.read_session() as s:
                return fn(s, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._readers, job)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Any blocking call on the writer thread (ordering with writes)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._writer, functools.partial(fn, *args))

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
