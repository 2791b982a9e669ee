"""multiflexid: the daemon. One asyncio loop runs the scheduler, the dispatcher, the
output writer, the socket server and the systemd watchdog.

Start: migrate the database, take this node's lock, mark jobs a previous life left
``running`` as ``lost``, bind the socket, then READY=1. SIGTERM: stop taking jobs, let
running ones finish for ``stop_grace_seconds``, stop the rest, STOPPING=1, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import multiflexi
from multiflexi.errors import MultiFlexiError
from multiflexi.protocol import PROTOCOL_VERSION
from multiflexi.settings import Settings, SettingsError, load_settings
from multiflexi.states import STAGE
from multiflexid.actions.chain import PreviousArtifacts
from multiflexid.actions.ledger import RunsQueued
from multiflexid.actions.worker import ActionWorker
from multiflexid.aio import nap
from multiflexid.artifacts import collect
from multiflexid.cluster import Cluster
from multiflexid.core import Core
from multiflexid.dbthread import DbThread
from multiflexid.deadlines import DeadlineTracker
from multiflexid.dispatcher import Dispatcher
from multiflexid.domain.deadline import TickSettled
from multiflexid.domain.jobstate import JobEnded
from multiflexid.events import EventBus
from multiflexid.executors.base import ExecResult, Executor
from multiflexid.executors.jobdir import remove_job_dir
from multiflexid.executors.native import NativeExecutor
from multiflexid.health import Health, describe
from multiflexid.indexer import OutputIndexer, share_of
from multiflexid.monitoring import Monitoring
from multiflexid.operations import Operations
from multiflexid.output import JobOutput, OutputHub
from multiflexid.presenters import output_view
from multiflexid.privileges import become_data_dir_owner
from multiflexid.rpc_methods import build_handlers
from multiflexid.rpc_server import RpcServer
from multiflexid.scheduler import Scheduler
from multiflexid.services import lifecycle, runtemplates
from multiflexid.services.jobs import job_view
from multiflexid.services.nodes import NodeConflict
from multiflexid.services.prepare import Prepared
from multiflexid.status import StatusWatch
from multiflexid.store.db import DatabaseError
from multiflexid.store.orm import Schedule
from multiflexid.store.search import OutputSearch
from multiflexid.systemd import Notifier, OutputLines, setup_logging

log = logging.getLogger("multiflexid")
_LAST_STAGE = max(STAGE.values())




class StartupError(Exception):
    """The daemon cannot start; the message says why and what to do."""


class Daemon:
    def __init__(self, settings: Settings, notifier: Notifier | None = None,
                 lines: OutputLines | None = None,
                 executors: dict[str, Executor] | None = None) -> None:
        """``executors``: instead of the real ones (tests: executors.fake.FakeExecutor)."""
        self.lines = lines
        self._given_executors = executors
        self.settings = settings
        self.core = Core(settings)
        self.notifier = notifier or Notifier()
        self.started_at = datetime.now(UTC)
        self.stop_taking = asyncio.Event()  # scheduler and dispatcher stop
        self.stopped = asyncio.Event()  # everything else stops
        self._status_wake = asyncio.Event()  # others changed the database (NOTIFY)
        self.bus = EventBus()
        self.queued = 0
        self.health = Health()
        # Told of every job's end once it is committed (metrics, notifications...).
        self.ended_listeners: list[Callable[[JobEnded], None]] = []
        # Told of every change of a tracked tick once committed (missed, late...).
        self.tick_listeners: list[Callable[[TickSettled], None]] = []
        self._lock_fd: int | None = None
        self._job_rank: dict[int, int] = {}
        self.search: dict[str, Any] = {}  # what status says of the text search index

    # --- start and stop -----------------------------------------------------------------

    def _take_node_lock(self) -> None:
        """On SQLite only one daemon may use a database: a second one refuses to start."""
        db = self.core.db
        if not db.is_sqlite or not db.url.database:
            return
        path = Path(db.url.database + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"another multiflexid (pid {holder}) is already running on {db.url.database}; "
                "one SQLite database serves one daemon (use PostgreSQL for several nodes)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _executors(self) -> dict[str, Executor]:
        if self._given_executors is not None:
            return self._given_executors
        from multiflexid.executors.engines import container_executors

        return {"Native": NativeExecutor(), **container_executors(self.settings)}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        _use_pidfd_child_watcher(loop)
        settings = self.settings
        try:
            before, after = self.core.migrate()
        except MultiFlexiError as exc:
            raise StartupError(exc.message) from None
        if before != after:
            log.info("database migrated from %s to %s", before or "empty", after)
        self._take_node_lock()
        self.db = DbThread(self.core.db)

        def committed(events: list[Any]) -> None:  # in the writer thread
            loop.call_soon_threadsafe(self._committed, events)

        self.db.on_events = committed
        self.box = self.core.box
        self.cluster = Cluster(settings, self.db, transitions=self.core.transitions,
                               postgres=not self.core.db.is_sqlite,
                               on_fenced=self._fenced, on_work=self._work_arrived)
        try:
            await self.cluster.register()
        except NodeConflict as exc:
            raise StartupError(str(exc)) from None
        self.tx = self.core.transitions
        lost, requeued = await self.db.write(
            self.tx.abandon, None if self.core.db.is_sqlite else settings.node,
            datetime.now(UTC),
            f"multiflexid on {settings.node} stopped while the job ran (its result is unknown)")
        if lost.done:
            log.warning("marked %d job(s) left running by a previous run as lost: %s",
                        len(lost.done), ", ".join(str(e.job_id) for e in lost.done))
        if requeued.done:
            log.info("%d job(s) claimed but not started by a previous run: back in the "
                     "queue: %s", len(requeued.done), ", ".join(map(str, requeued.done)))
        for changed in (lost, requeued):  # another node (a reaper) was quicker
            if changed.skipped:
                log.info("left alone by %s (changed meanwhile): %s", changed.transition,
                         changed)
        self.hub = OutputHub(
            lambda rows, sizes, lazy: self.db.submit(lifecycle.write_output, rows, sizes,
                                                     lazy=lazy),
            self.publish)
        previous = PreviousArtifacts(self.db.read)
        executors = self._executors()
        self.dispatcher = Dispatcher(settings, self.db, self.box, self.hub, self.bus,
                                     executors, transitions=self.tx,
                                     prefetch=self.core.db.is_sqlite,
                                     pre_run=[previous.fill],
                                     post_run=[previous.clear, self._collect_artifacts],
                                     lines=self.lines, health=self.health)
        self.dispatcher.on_change = self._report_status
        self.scheduler = Scheduler(self.db, self.tx, self._jobs_created,
                                   max_sleep=max(1.0, settings.poll_seconds),
                                   health=self.health)
        self.actions = ActionWorker(settings, self.db, self.box, self.tx, self.health,
                                    one_node=self.core.db.is_sqlite,
                                    on_jobs=self._jobs_created,
                                    on_template=self._template_changed)
        self.deadlines = DeadlineTracker(self.db, self.core.deadlines, health=self.health,
                                         max_sleep=max(1.0, settings.poll_seconds * 5))
        self.tick_listeners.append(lambda e: self._publish_template(e.runtemplate_id))
        self.tick_listeners.append(lambda _tick: self.actions.wake.set())  # missed, late
        self.monitoring = Monitoring(self)  # Prometheus listener, Zabbix sender
        self.ops = Operations(self.db, self.box, self.tx, self,
                              configured_access=settings.access)
        self.rpc = RpcServer(settings.socket, build_handlers(self.ops),
                             authorize=self.ops.permissions,
                             max_frame=settings.max_frame_bytes, health=self.health)
        self.bus.subscribe(self.rpc.broadcast, self.rpc.interested)
        self.dispatcher.publish = self.publish
        self.status_watch = StatusWatch(
            lambda: self.status(None), lambda doc: self.bus.publish("daemon.status", doc),
            lambda: self.bus.wants("daemon.status"), executors)
        self.indexer = OutputIndexer(
            self.db, share=lambda: share_of(len(self.dispatcher.executing)),
            health=self.health)
        self.dispatcher.on_ended = self.indexer.wake.set  # its output is the indexer's
        self.dispatcher.poll = self.actions.poll = self._poll_seconds
        base_sleep = self.scheduler.max_sleep
        self.scheduler.poll = lambda: base_sleep * 5 if self.cluster.listening else base_sleep
        self._search_reader = OutputSearch(self.core.db.dialect)
        try:
            await self.rpc.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {settings.socket}: {exc.strerror or exc} "
                "(check socket / MULTIFLEXI_SOCKET and its directory)") from None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        await self._read_status()
        self.notifier.ready(self._status_line())
        log.info("multiflexid %s ready on node %s (%s, socket %s, max %d parallel jobs)",
                 multiflexi.__version__, settings.node, self.core.db.display_url(),
                 settings.socket, settings.max_parallel)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.scheduler.run(self.stop_taking), name="scheduler")
                tg.create_task(self.dispatcher.run(self.stop_taking), name="dispatcher")
                tg.create_task(self.hub.run(self.stopped), name="output")
                tg.create_task(self.actions.run(self.stopped), name="actions")
                tg.create_task(self._watchdog(), name="watchdog")
                tg.create_task(self._status_loop(), name="status")
                tg.create_task(self.cluster.run_heartbeat(self.stopped), name="heartbeat")
                tg.create_task(self.cluster.run_listener(self.stopped), name="listen")
                tg.create_task(self._shutdown(), name="shutdown")
                tg.create_task(self.deadlines.run(self.stop_taking), name="deadlines")
                tg.create_task(self.rpc.keep_permissions(self.stopped), name="access")
                tg.create_task(self.status_watch.run(self.stopped), name="status-watch")
                tg.create_task(self.indexer.run(self.stopped), name="indexer")
                self.monitoring.start(tg, self.stopped)
            await self.cluster.unregister()
        finally:
            await self.rpc.close()
            self.dispatcher.dirs.close()
            self.db.close()
            self.core.close()
            self.notifier.close()
            if self._lock_fd is not None:  # the next daemon of this database may start
                os.close(self._lock_fd)
                self._lock_fd = None

    def _committed(self, events: list[Any]) -> None:
        """Events of committed transactions (every job's end: ``JobEnded``; every change
        of a tracked tick: ``TickSettled``; action runs an end queued: ``RunsQueued``,
        which wake the action worker), in the loop."""
        groups: dict[type, list[Callable[[Any], None]]] = {
            JobEnded: self.ended_listeners, TickSettled: self.tick_listeners,
            RunsQueued: [lambda _queued: self.actions.wake.set()]}
        for event in events:
            for kind, listeners in groups.items():
                if type(event) is not kind:
                    continue
                for listener in listeners:
                    try:
                        listener(event)
                    except Exception as exc:
                        self.health.report(f"{kind.__name__} listener", exc)

    def _fenced(self, fenced: bool) -> None:
        self.dispatcher.accepting = not fenced and not self.stop_taking.is_set()
        self._report_status()

    def _work_arrived(self) -> None:
        self._status_wake.set()
        self.dispatcher.wake.set()
        self.scheduler.wake.set()
        self.actions.wake.set()  # (a job's end on another node may have queued actions)

    def _poll_seconds(self) -> float:
        """How long the dispatcher and the action worker rest when nobody tells them of
        work: ``poll_seconds``, or five times that while PostgreSQL's LISTEN connection is
        up (then a NOTIFY tells of what other nodes and the CLI queue, and the poll only
        catches what a dropped notification missed): an idle daemon costs less."""
        poll = self.settings.poll_seconds
        return poll * 5 if self.cluster.listening else poll

    def _on_signal(self, sig: int) -> None:
        if self.stop_taking.is_set():
            log.warning("%s again: stopping running jobs now", signal.Signals(sig).name)
            for run in self.dispatcher.running.values():
                run.cancel.set()
            return
        log.info("%s: stopping (running jobs get %g s to finish)", signal.Signals(sig).name,
                 self.settings.stop_grace_seconds)
        self.stop_taking.set()

    async def _shutdown(self) -> None:
        await self.stop_taking.wait()
        self.notifier.stopping(f"stopping; {len(self.dispatcher.executing)} job(s) running")
        await self.dispatcher.drain(self.settings.stop_grace_seconds)
        self.stopped.set()

    # --- periodic -----------------------------------------------------------------------

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_seconds
        if not interval:
            await self.stopped.wait()
            return
        while not self.stopped.is_set():
            self.notifier.watchdog()  # sent from the loop itself: a stuck loop gets no ping
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopped.wait(), interval / 3)

    async def _status_loop(self) -> None:
        """The queue's length and the index's state for the status: every 2 s, or while
        NOTIFY reaches this node (then it is woken by others' changes) every 10 s and
        when woken, at most every 2 s."""
        while not self.stopped.is_set():
            await nap(asyncio.Event(), self.stopped, 2.0)
            if self.cluster.listening:
                await nap(self._status_wake, self.stopped, 8.0)
            await self._read_status()
            self._report_status()

    def _status_of(self, s: Session) -> tuple[int, dict[str, Any]]:
        """The queue's length and the search index's state, in one read."""
        queued = s.scalar(select(func.count()).select_from(Schedule)) or 0
        return queued, self._search_reader.status(s)

    async def _read_status(self) -> None:
        try:
            self.queued, self.search = await self.db.look(self._status_of)
        except Exception as exc:
            self.health.failed("database", exc)
            self.search = {**self.search, "problem": describe(exc)}
        else:
            self.health.ok("database")

    def _status_line(self) -> str:
        line = f"{len(self.dispatcher.executing)} running, {self.queued} queued"
        if self.degraded:
            why = [r for r in (self.cluster.lease_problem, self.health.summary()) if r]
            line = f"degraded: {'; '.join(why) or 'database writes failing'}; " + line
        return line

    @property
    def degraded(self) -> bool:
        return (self.health.degraded or self.hub.failing_since is not None
                or self.cluster.lease_problem is not None)

    def _report_status(self) -> None:
        self.notifier.status(self._status_line())
        self.status_watch.changed()

    async def _collect_artifacts(self, prep: Prepared, _result: ExecResult,
                                 out: JobOutput) -> None:
        """Store the job's declared files and its report, then remove its directory."""
        if prep.workdir is None or prep.app is None:
            return
        try:
            empty = not any(os.scandir(prep.workdir))
        except FileNotFoundError:
            return
        if empty:  # the common case: nothing left behind, nothing to store
            # Removed in the thread of the jobs' directories, not waited for (on a busy
            # disk an rmdir takes milliseconds): gone a moment after the job's end.
            self.dispatcher.dirs.discard(prep.workdir)
            if "RESULT_FILE" in prep.env:
                out.system(f"[multiflexi] warning: RESULT_FILE {prep.env['RESULT_FILE']} was "
                           "not written by the job")
            return
        found = await asyncio.to_thread(
            collect, prep.workdir, prep.app.artifacts, prep.env,
            max_file=self.settings.artifact_max_file_bytes,
            max_job=self.settings.artifact_max_job_bytes,
        )
        for warning in found.warnings:
            out.system(f"[multiflexi] warning: {warning}")
        if found.left_behind:
            shown = ", ".join(found.left_behind[:20])
            more = f" and {len(found.left_behind) - 20} more" if len(found.left_behind) > 20 \
                else ""
            out.system(f"[multiflexi] not kept (not declared as artifacts): {shown}{more}")
        for f in found.files:
            out.system(f"[multiflexi] artifact {f.filename} ({f.size} bytes)"
                       + (f": {f.note}" if f.note else ""))
        if found.report is not None:
            out.system(f"[multiflexi] result report: {found.report.status}"
                       + (f": {found.report.message}" if found.report.message else ""))
        await self.db.write(lifecycle.save_artifacts, prep.job_id, found, datetime.now(UTC))
        await asyncio.to_thread(remove_job_dir, prep.workdir, prep.log_fields)

    # --- what the socket methods use ----------------------------------------------------

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Hand an event to socket subscribers in its wire shape (shared/PROTOCOL.md)."""
        if not self.bus.has_listeners:
            return
        if kind == "job.output":
            payload = output_view(payload["job_id"], payload["seq"], payload["stream"],
                                  payload["at"], payload["data"])
        elif kind == "job.changed":
            if self._stale(payload):
                return
            payload = {"job": payload}
        elif kind == "runtemplate.changed":
            payload = {"runtemplate": payload}
        self.bus.publish(kind, payload)

    def _stale(self, job: dict[str, Any]) -> bool:
        """Whether a job event comes later than one that told more (events are built from
        reads that may overlap: a "scheduled" read before the job started must not be
        pushed after its "running" or its end)."""
        rank = STAGE.get(job.get("state", ""), _LAST_STAGE)
        seen = self._job_rank.get(job["id"], -1)
        if rank < seen:
            return True
        self._job_rank[job["id"]] = rank
        if len(self._job_rank) > 10_000:  # forget the oldest
            for old in list(self._job_rank)[:5_000]:
                del self._job_rank[old]
        return False

    def _jobs_created(self, job_ids: list[int]) -> None:
        self.dispatcher.wake.set()
        if self.bus.has_listeners:
            self.dispatcher.background(self._announce(job_ids))

    def _template_changed(self, rt_id: int) -> None:
        """A template changed by an action (Stop): its view to subscribers."""
        self.work_arrived()
        self._publish_template(rt_id)

    def _publish_template(self, rt_id: int) -> None:
        """A template's view to subscribers (an action changed it, its current tick
        changed)."""
        if self.bus.has_listeners:
            self.dispatcher.background(self._announce_template_view(rt_id))

    async def _announce_template_view(self, rt_id: int) -> None:
        with contextlib.suppress(MultiFlexiError):  # removed meanwhile
            self.publish("runtemplate.changed", await self.db.read(
                lambda s: runtemplates.runtemplate_view(s, runtemplates.get_runtemplate(
                    s, rt_id))))

    async def _announce(self, job_ids: list[int]) -> None:
        for job_id in job_ids:
            view = await self.db.read(job_view, job_id)
            self.publish("job.changed", view)
            if view.get("runtemplate_id"):
                rt = await self.db.read(
                    lambda s, i=view["runtemplate_id"]: runtemplates.runtemplate_view(
                        s, runtemplates.get_runtemplate(s, i)))
                self.publish("runtemplate.changed", rt)

    # --- Control: what the operations of the socket's handlers need -----------------------

    @property
    def stopping(self) -> bool:
        return self.stop_taking.is_set()

    def work_arrived(self) -> None:
        self.dispatcher.wake.set()
        self.scheduler.wake.set()

    def cancel_here(self, job_id: int) -> bool:
        return self.dispatcher.cancel(job_id)

    async def flush_output(self) -> None:
        await self.hub.written()  # a client reads it now: all it was (or was not) sent

    def log(self, message: str, fields: dict[str, Any]) -> None:
        log.info("%s", message, extra=fields)

    def actions_due(self) -> None:
        self.actions.wake.set()

    async def status(self, user: str | None) -> dict[str, Any]:
        """What daemon.status says (``user``: who asks; None for a pushed status, which
        the socket completes per subscriber)."""
        db = self.core.db
        search = {**self.search, "indexed_since_start": self.indexer.bytes}
        return {
            "version": multiflexi.__version__,
            "protocol": PROTOCOL_VERSION,
            "node": self.settings.node,
            "pid": os.getpid(),
            "started_at": self.started_at.isoformat().replace("+00:00", "Z"),
            "user": user,
            "running": len(self.dispatcher.executing),
            "running_jobs": self.dispatcher.executing,
            "queued": self.queued,
            "max_parallel": self.settings.max_parallel,
            "database": {"url": db.display_url(), "backend": db.dialect,
                         "reachable": "database" not in self.health.problems,
                         # the writer's committed transactions and the writes they held
                         "transactions": self.db.batches, "writes": self.db.writes},
            "degraded": self.degraded,
            "status": self._status_line(),
            "stopping": self.stop_taking.is_set(),
            "engines": dict(self.status_watch.engines),
            "search": search,
        }


def _use_pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> None:
    """Python 3.11 waits for each child in a thread of its own; a pidfd in the event loop
    is cheaper (3.12 and later do this by themselves)."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return  # kernel without pidfd: keep the default watcher
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(loop)
        asyncio.set_child_watcher(watcher)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="multiflexid",
        description="MultiFlexi daemon: schedules and runs jobs, serves the socket. Runs in "
                    "the foreground (systemd Type=notify); SIGTERM stops it gracefully.",
    )
    parser.add_argument("--config", help="TOML config file "
                        "[default: $MULTIFLEXI_CONFIG or /etc/multiflexi/multiflexi.conf]")
    parser.add_argument("--log-target", choices=("auto", "journal", "stderr"),
                        default=os.environ.get("MULTIFLEXI_LOG_TARGET", "auto"),
                        help="where to log: the journal under systemd (auto), or stderr")
    parser.add_argument("--debug", action="store_true", help="log debug messages")
    parser.add_argument("--version", action="version",
                        version=f"multiflexid {multiflexi.__version__}")
    args = parser.parse_args(argv)
    # Started by hand as root on an installed system: run as the data dir's owner (user
    # multiflexi), or the files it makes would be root's and the service could not use them.
    become_data_dir_owner(sys.argv[1:] if argv is None else argv, "multiflexid")
    target = setup_logging(args.log_target, logging.DEBUG if args.debug else logging.INFO)
    # The event loop hands the GIL to database threads around every syscall (spawning a
    # job, reading its pipes); take it back after 1 ms, not the default 5 ms.
    sys.setswitchinterval(0.001)
    # Start-up failures: one line on stderr (under systemd, stderr is the journal too).
    try:
        settings = load_settings(args.config)
        asyncio.run(Daemon(settings, lines=OutputLines(target)).serve())
    except (StartupError, SettingsError, DatabaseError) as exc:
        print(f"multiflexid: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
    except MultiFlexiError as exc:
        print(f"multiflexid: cannot start: {exc.message}", file=sys.stderr)
        sys.exit(1)
    except OSError as exc:  # a data dir, key file or lock it cannot make or open
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"multiflexid: cannot start: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    log.info("multiflexid stopped")


if __name__ == "__main__":
    main()
