"""Running blocking database work from the event loop.

Writes go through one thread with *group commit*: every write submitted while the
previous transaction was committing runs in the next transaction, and one COMMIT — one
fsync — covers them all (job starts, ends and output batches of many jobs). If any write
of a batch fails, the batch is rolled back and each write runs again in a transaction of
its own, so one bad write never undoes the others. Reads use a small pool of their own
so a long history query never delays a job's start or end.

Events a write leaves in ``session.info["events"]`` (the store's ``JobEnded``) are handed
to ``on_events`` once their transaction has committed — never for a rolled-back one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from multiflexid.store.db import Database

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_BATCH = 256


class DbThread:
    def __init__(self, db: Database, readers: int = 4) -> None:
        self.db = db
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], Future[Any]] | None] = (
            queue.SimpleQueue())
        self._writer = threading.Thread(target=self._write_loop, name="mf-db-write",
                                        daemon=True)
        self._writer.start()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="mf-db-read")
        self.batches = 0
        self.writes = 0
        # Called in the writer thread with the events of each committed transaction.
        self.on_events: Callable[[list[Any]], None] | None = None
        # Called in the writer thread with how long each committed transaction took (s).
        self.on_commit_seconds: Callable[[float], None] | None = None

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(session, ...)`` for the writer now (writes run in submission order)."""
        fut: Future[T] = Future()
        self._queue.put((lambda s: fn(s, *args, **kwargs), fut))
        return fut

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in a write transaction (shared with other writes
        submitted at the same time; ``fn`` runs in a savepoint of its own)."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in a read-only transaction."""
        def job() -> T:
            with self.db.read_session() as s:
                return fn(s, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._readers, job)

    def _write_loop(self) -> None:
        self._session = self.db.writer_session()
        while True:
            item = self._queue.get()
            if item is None:
                bind = self._session.bind
                self._session.close()
                if bind is not None and hasattr(bind, "close"):
                    bind.close()
                return
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Callable[..., Any], Future[Any]]]) -> None:
        batch = [(fn, fut) for fn, fut in batch if fut.set_running_or_notify_cancel()]
        if not batch:
            return
        info = self._session.info
        if len(batch) > 1:
            info["events"] = []
            started = time.perf_counter()
            try:
                with self.db.transaction(self._session) as s:
                    results = [fn(s) for fn, _fut in batch]
            except Exception:
                pass  # one of them failed (or the commit): each on its own below
            else:
                self.batches += 1
                self.writes += len(batch)
                self._timed(started)
                self._committed(info.pop("events"))
                for (_fn, fut), result in zip(batch, results, strict=True):
                    fut.set_result(result)
                return
        for fn, fut in batch:
            info["events"] = []
            started = time.perf_counter()
            try:
                with self.db.transaction(self._session) as s:
                    result = fn(s)
            except BaseException as exc:
                fut.set_exception(exc)
            else:
                self._timed(started)
                self._committed(info.pop("events"))
                fut.set_result(result)
            self.batches += 1
            self.writes += 1

    def _timed(self, started: float) -> None:
        if self.on_commit_seconds is not None:
            try:
                self.on_commit_seconds(time.perf_counter() - started)
            except Exception:  # a listener's bug must not fail the writes
                log.exception("commit time listener failed")

    def _committed(self, events: list[Any]) -> None:
        if events and self.on_events is not None:
            try:
                self.on_events(events)
            except Exception:  # a listener's bug must not fail the writes
                log.exception("event listener failed")

    def close(self) -> None:
        self._queue.put(None)
        self._writer.join()
        self._readers.shutdown(wait=True)
