"""Running blocking database work from the event loop.

Writes go through one thread with *group commit*: every write submitted while the
previous transaction was committing runs in the next transaction, and one COMMIT — one
fsync — covers them all (job starts, ends and output batches of many jobs). If any write
of a batch fails, the batch is rolled back and each write runs again in a transaction of
its own, so one bad write never undoes the others. Reads use a small pool of their own
so a long history query never delays a job's start or end.

Two kinds of write make a commit cover more:

- *lazy* writes (a job's end, its output, its launch record) may wait up to ``linger``
  seconds for company: a batch of lazy writes only is committed when that time is up, or
  as soon as an urgent write (a claim, a socket client's change) arrives — a job's end
  rides with the claim of the job that takes its slot;
- *merged* writes (:meth:`submit_many`): the items of one function taken in one batch
  are handed to it together, after the batch's other writes, so it writes them with one
  statement (all the ends of a commit in one UPDATE). After: the claim that takes an
  ended job's slot does not take the next job of its template in the same commit — the
  other nodes, told by the end's NOTIFY, have the same chance at it.

Events a write leaves in ``session.info["events"]`` (the store's ``JobEnded``) are handed
to ``on_events`` once their transaction has committed — never for a rolled-back one.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from multiflexid.store.db import Database

T = TypeVar("T")
Item = TypeVar("Item")
log = logging.getLogger(__name__)

MAX_BATCH = 256
# How long a lazy write may wait for others to share its commit (seconds).
LINGER = 0.02
# A look (:meth:`DbThread.look`) reads again after this long even if nothing changed.
LOOK_MAX_AGE = 30.0


@dataclass
class _Write:
    fn: Callable[..., Any]  # fn(session) — or, merged, fn(session, items) -> results
    future: Future[Any]
    lazy: bool = False
    merged: bool = False
    item: Any = None
    at: float = field(default_factory=time.monotonic)


class DbThread:
    def __init__(self, db: Database, readers: int = 4, linger: float = LINGER) -> None:
        self.db = db
        self.linger = linger
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
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
        self._looks: dict[Any, tuple[int, float, Any]] = {}

    def submit(self, fn: Callable[..., T], *args: Any, lazy: bool = False,
               **kwargs: Any) -> Future[T]:
        """Queue ``fn(session, ...)`` for the writer now (writes run in submission order;
        ``lazy``: it may wait up to ``linger`` s for others to share its commit)."""
        fut: Future[T] = Future()
        self._queue.put(_Write(lambda s: fn(s, *args, **kwargs), fut, lazy))
        return fut

    def submit_many(self, fn: Callable[[Session, list[Item]], Sequence[T | BaseException]],
                    item: Item, *, lazy: bool = False) -> Future[T]:
        """Queue ``item`` for ``fn(session, items)``: called once with all the items the
        writer takes in one batch (after its other writes), it returns one result per
        item — an exception instance fails that item alone."""
        fut: Future[T] = Future()
        self._queue.put(_Write(fn, fut, lazy, merged=True, item=item))
        return fut

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in a write transaction (shared with other writes
        submitted at the same time; ``fn`` runs in a savepoint of its own)."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def write_merged(self, fn: Callable[[Session, list[Item]], Sequence[T | BaseException]],
                           item: Item) -> T:
        """``item``'s result of ``fn(session, items)``, called once with the items of all
        the calls a write transaction takes (:meth:`submit_many`)."""
        return await asyncio.wrap_future(self.submit_many(fn, item))

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(session, *args, **kwargs)`` in a read-only transaction."""
        def job() -> T:
            with self.db.read_session() as s:
                return fn(s, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._readers, job)

    async def look(self, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`read` of ``fn(session, *args)`` for a periodic look (is a template due?
        a queued job? an action run?): read again only when the database may have
        changed since the last look of the same call, or ``LOOK_MAX_AGE`` passed — an
        idle daemon's looks cost no read while nothing changes. Where a change cannot be
        told (PostgreSQL: NOTIFY wakes the daemon instead) every look reads."""
        version = self.db.data_version()  # before the read: a commit meanwhile is seen next
        now = time.monotonic()
        key = (fn, args)
        seen = self._looks.get(key)
        if (version is not None and seen is not None and seen[0] == version
                and now - seen[1] < LOOK_MAX_AGE):
            return seen[2]
        result = await self.read(fn, *args)
        if version is not None:
            self._looks[key] = (version, now, result)
        return result

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
            lazy = item.lazy
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    if not lazy:
                        break
                    wait = batch[0].at + self.linger - time.monotonic()
                    if wait <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=wait)
                    except queue.Empty:
                        break
                if nxt is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(nxt)
                lazy = lazy and nxt.lazy
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Write]) -> None:
        batch = [w for w in batch if w.future.set_running_or_notify_cancel()]
        if not batch:
            return
        info = self._session.info
        calls = _calls(batch)
        if len(batch) > 1:
            info["events"] = []
            started = time.perf_counter()
            try:
                with self.db.transaction(self._session) as s:
                    results = [(writes, call(s)) for writes, call in calls]
            except Exception:
                pass  # one of them failed (or the commit): each on its own below
            else:
                self.batches += 1
                self.writes += len(batch)
                self._timed(started)
                self._committed(info.pop("events"))
                for writes, result in results:
                    _settle(writes, result)
                return
        for write in batch:
            ((writes, call),) = _calls([write])
            info["events"] = []
            started = time.perf_counter()
            try:
                with self.db.transaction(self._session) as s:
                    result = call(s)
            except BaseException as exc:
                write.future.set_exception(exc)
            else:
                self._timed(started)
                self._committed(info.pop("events"))
                _settle(writes, result)
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


def _calls(batch: list[_Write]) -> list[tuple[list[_Write], Callable[[Session], Any]]]:
    """The batch as calls: the plain writes in order, one call each; then the merged
    writes, one call per function with all its items."""
    calls: list[tuple[list[_Write], Callable[[Session], Any]]] = []
    merged: dict[Any, list[_Write]] = {}
    for write in batch:
        if not write.merged:
            calls.append(([write], write.fn))
        else:
            merged.setdefault(write.fn, []).append(write)
    calls += [(group, _together(fn, group)) for fn, group in merged.items()]
    return calls


def _together(fn: Callable[[Session, list[Any]], Any], group: list[_Write]
              ) -> Callable[[Session], Any]:
    return lambda s: fn(s, [w.item for w in group])


def _settle(writes: list[_Write], result: Any) -> None:
    if len(writes) == 1 and not writes[0].merged:
        writes[0].future.set_result(result)
        return
    for write, one in zip(writes, result, strict=True):
        if isinstance(one, BaseException):
            write.future.set_exception(one)
        else:
            write.future.set_result(one)
