"""This node among others: lease heartbeat, self-fencing, reaping dead nodes, LISTEN.

- Every ``heartbeat_seconds`` the node renews its lease (``lease_seconds``). If it cannot
  for a whole lease, it stops launching jobs (self-fencing): another node may by then
  have declared it dead. It starts again once the lease is renewed.
- On PostgreSQL it marks the running jobs of nodes whose lease expired ``lost`` — but only
  after its own lease has been renewed without a gap for a whole lease period, so that
  after a database outage (when every lease lapsed) nodes do not reap each other.
- It LISTENs for ``multiflexi_jobs`` notifications and wakes the dispatcher, so a waiting
  node starts queued work at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

import multiflexi
from multiflexi.settings import Settings
from multiflexid.dbthread import DbThread
from multiflexid.health import describe
from multiflexid.services import nodes
from multiflexid.store.transitions import CHANNEL, JobTransitions, describe_skipped

log = logging.getLogger(__name__)


def _backend_pid(s: Any) -> int:
    return int(s.scalar(text("SELECT pg_backend_pid()")))


class Cluster:
    def __init__(
        self,
        settings: Settings,
        db: DbThread,
        *,
        transitions: JobTransitions,
        postgres: bool,
        on_fenced: Callable[[bool], None],
        on_work: Callable[[], None],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.db = db
        self.tx = transitions
        self.postgres = postgres
        self.on_fenced = on_fenced
        self.on_work = on_work
        self.clock = clock
        self.pid = os.getpid()
        self.fenced = False
        self.renew_error: str | None = None  # why the last renewal failed
        self.last_renewal = time.monotonic()
        self.steady_since = time.monotonic()  # renewals without a gap since then
        self.listening = False

    @property
    def lease_problem(self) -> str | None:
        """What is wrong with this node's lease, or None: its last renewal failed (the
        database refuses writes: degraded at once, though jobs still run until the lease
        runs out), or it ran out and the node launches nothing."""
        why = f" ({self.renew_error})" if self.renew_error else ""
        if self.fenced:
            return f"lease not renewed{why}, not launching jobs"
        if self.renew_error:
            return f"lease renewal failing{why}"
        return None

    async def register(self) -> None:
        await self.db.write(nodes.register, self.settings.node, pid=self.pid,
                            version=multiflexi.__version__, now=self.clock(),
                            lease=self.settings.lease_seconds)

    async def unregister(self) -> None:
        with contextlib.suppress(Exception):
            await self.db.write(nodes.unregister, self.settings.node, self.pid, self.clock())

    async def run_heartbeat(self, stopped: asyncio.Event) -> None:
        interval = self.settings.heartbeat_seconds
        lease = self.settings.lease_seconds
        while not stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), interval)
            if stopped.is_set():
                return
            await self.beat()
            if time.monotonic() - self.last_renewal > lease and not self.fenced:
                self.fenced = True
                log.critical(
                    "lease of node %s not renewed for %g s: not launching jobs until it is",
                    self.settings.node, lease)
                self.on_fenced(True)

    async def beat(self) -> None:
        lease = self.settings.lease_seconds
        try:
            alive = await self.db.write(nodes.heartbeat, self.settings.node, pid=self.pid,
                                        now=self.clock(), lease=lease)
            if not alive:
                log.error("node %s was declared dead by another node (its running jobs were "
                          "marked lost); registering again", self.settings.node)
                await self.register()
        except Exception as exc:
            self.renew_error = describe(exc)
            log.warning("cannot renew the lease of node %s: %s", self.settings.node,
                        self.renew_error)
            self.steady_since = time.monotonic()
            return
        self.renew_error = None
        now = time.monotonic()
        if now - self.last_renewal > 2 * self.settings.heartbeat_seconds + 1:
            self.steady_since = now
        self.last_renewal = now
        if self.fenced:
            self.fenced = False
            log.warning("lease of node %s renewed: launching jobs again", self.settings.node)
            self.on_fenced(False)
        if self.postgres and now - self.steady_since >= lease:
            await self.reap()

    async def reap(self) -> None:
        try:
            reaped = await self.db.write(nodes.reap, self.tx, self.settings.node, self.clock(),
                                         self.settings.heartbeat_seconds)
            stale = await self.db.write(nodes.release_stale_claims, self.tx, self.clock(),
                                        self.settings.claim_hold_seconds)
        except Exception as exc:
            log.warning("cannot look for dead nodes: %s", describe(exc))
            return
        for dead in reaped:
            log.warning("node %s is dead (last heartbeat %s): %d running job(s) marked lost%s"
                        "; %d claimed, not started, back in the queue%s",
                        dead.node, dead.last_heartbeat.isoformat(), len(dead.jobs),
                        (": " + ", ".join(map(str, dead.jobs))) if dead.jobs else "",
                        len(dead.requeued),
                        "; left alone, they changed meanwhile: "
                        + describe_skipped(dead.skipped) if dead.skipped else "")
        if stale.done:
            log.warning("%d job(s) claimed but not started for %g s: back in the queue: %s",
                        len(stale.done), self.settings.claim_hold_seconds,
                        ", ".join(map(str, stale.done)))
        if stale.skipped:
            log.info("claims not released, they changed meanwhile: %s", stale)
        if reaped or stale.done:
            self.on_work()

    async def _notified(self, conn: Any, own: int, stopped: asyncio.Event) -> bool:
        """Wake this node for each notification another backend sends, until ``stopped``
        (True) or the connection fails (raises). The event loop watches the connection's
        socket itself: psycopg's ``notifies()`` wakes every 0.1 s to look, which is most
        of what an idle daemon would cost."""
        import psycopg

        loop = asyncio.get_running_loop()
        pgconn = conn.pgconn
        lost: asyncio.Future[BaseException] = loop.create_future()
        # The loop watches a duplicate of the socket that is ours: when the server ends
        # the connection, libpq closes its own descriptor at once, and the number, free
        # again, may go to the next socket anyone opens (a client of ours: watching it
        # as the LISTEN connection's, or un-watching it, broke that client's connection).
        fd = os.dup(pgconn.socket)
        watched = True

        def unwatch() -> None:
            nonlocal watched
            if watched:
                watched = False
                loop.remove_reader(fd)

        def readable() -> None:
            try:
                pgconn.consume_input()  # raises when the server closed the connection
                woken = False
                while (notice := pgconn.notifies()) is not None:
                    woken = woken or notice.be_pid != own
                if pgconn.status != psycopg.pq.ConnStatus.OK:
                    raise psycopg.OperationalError("the connection is broken")
                if woken:
                    self.on_work()
            except Exception as exc:
                unwatch()  # (our duplicate stays readable at the end of the stream)
                if not lost.done():
                    lost.set_result(exc)

        try:
            loop.add_reader(fd, readable)
            readable()  # what arrived with the LISTEN's answer
            waiter = asyncio.ensure_future(stopped.wait())
            either: set[asyncio.Future[Any]] = {lost, waiter}
            try:
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        finally:
            unwatch()
            os.close(fd)
        if lost.done():
            raise lost.result()
        return True

    async def run_listener(self, stopped: asyncio.Event) -> None:
        """LISTEN on PostgreSQL; reconnects with backoff when the connection drops."""
        if not self.postgres:
            await stopped.wait()
            return
        import psycopg
        from sqlalchemy.engine import make_url

        conninfo = make_url(self.db.db.url.render_as_string(hide_password=False)).set(
            drivername="postgresql").render_as_string(hide_password=False)
        delay = 0.5
        while not stopped.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                        conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    # What this node's own writer announces (its jobs' ends, what its
                    # clients queued) it knows already: not woken by that.
                    own = await self.db.write(_backend_pid)
                    self.listening = True
                    delay = 0.5
                    self.on_work()  # anything queued while we were not listening
                    if await self._notified(conn, own, stopped):
                        return
            except Exception as exc:  # the connection, or the writer asked for its pid
                self.listening = False
                log.warning("LISTEN connection lost (%s); reconnecting in %g s",
                            describe(exc), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopped.wait(), delay)
                delay = min(delay * 2, 10.0)
