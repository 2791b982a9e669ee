"""Removing the containers nobody else will: those a job could not remove when it ended
(the engine's API was away), as soon as the API answers again; and, when sweeping (the
daemon's executors), those of a daemon that ended while their job ran (killed, OOM, power),
recognised by their owner label, once at start and then every ``sweep_interval`` seconds.
All in one daemon thread, so a slow or absent engine delays nothing else."""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

JOB_LABEL = "multiflexi.job_id"
OWNER_LABEL = "multiflexi.owner"  # "<host> <boot id> <pid> <process start time>"


class JanitorEngine(Protocol):
    """What the janitor needs of its engine (a ContainerExecutor)."""

    name: str

    @property
    def engine(self) -> str: ...
    def describe(self, exc: BaseException) -> str: ...
    def _api_delete(self, name: str) -> bool: ...
    def _api_list_jobs(self) -> list[tuple[str, dict[str, str]]]: ...


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "?"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (None: no such process)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]  # field 22: starttime


def owner_label(pid: int | None = None) -> str:
    """Names this process (or ``pid``) so that another can tell when it is gone."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()} {_boot_id()} {pid} {_start_time(pid)}"


def owner_gone(label: str) -> bool:
    """Whether the daemon process a container's owner label names has ended (only for
    labels of this host; a container of another host is never judged gone)."""
    parts = label.split()
    if len(parts) != 4 or parts[0] != socket.gethostname():
        return False
    if parts[1] != _boot_id():
        return True  # the host was rebooted since
    return not parts[2].isdigit() or _start_time(int(parts[2])) != parts[3]


class Janitor:
    def __init__(self, engine: JanitorEngine, *, retry_interval: float, sweep: bool,
                 sweep_interval: float) -> None:
        self._engine = engine
        self.retry_interval = retry_interval  # between removals of left-behind containers
        self.sweep_interval = sweep_interval
        self.active: set[str] = set()  # containers of jobs running now: never swept
        self._orphans: dict[str, int] = {}  # name -> job id: removal failed, retried
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._guard = threading.Lock()
        self._sweep = sweep
        if sweep:
            self._start()

    def orphan(self, name: str, job_id: int) -> None:
        """A container that could not be removed: retry until it is."""
        with self._guard:
            self._orphans[name] = job_id
        self._start()
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()

    def _start(self) -> None:
        with self._guard:
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name=f"{self._engine.name}-janitor")
                self._thread.start()

    def _loop(self) -> None:
        next_sweep = time.monotonic() if self._sweep else math.inf
        backoff = self.retry_interval  # before the next try of a sweep that failed
        said_unreachable = False
        while not self._closed.is_set():
            try:
                self._retry_orphans()
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + backoff  # if it fails: later
                    self.sweep()
                    next_sweep = time.monotonic() + self.sweep_interval
                    backoff = self.retry_interval
                said_unreachable = False
            except Exception as e:
                backoff = min(backoff * 2, self.sweep_interval)
                if not said_unreachable:
                    log.info("%s executor: %s", self._engine.engine, self._engine.describe(e))
                    said_unreachable = True
            with self._guard:
                pending = bool(self._orphans)
            wait = max(0.0, next_sweep - time.monotonic())
            if pending:
                wait = min(wait, self.retry_interval)
            self._wake.wait(min(wait, 3600.0))
            self._wake.clear()

    def _retry_orphans(self) -> None:
        with self._guard:
            orphans = dict(self._orphans)
        for name, job_id in orphans.items():
            self._engine._api_delete(name)  # raises while the API is still away
            with self._guard:
                self._orphans.pop(name, None)
            log.info("removed container %s of job %s (it could not be removed when the job "
                     "ended)", name, job_id, extra={"MULTIFLEXI_JOB_ID": job_id})

    def sweep(self) -> list[str]:
        """Blocking: remove job containers whose daemon process is gone; their names."""
        removed = []
        for name, labels in self._engine._api_list_jobs():
            if name in self.active or not owner_gone(labels.get(OWNER_LABEL, "")):
                continue
            if self._engine._api_delete(name):
                removed.append(name)
                log.info("removed container %s of job %s, left behind by a daemon that "
                         "ended while it ran", name, labels.get(JOB_LABEL),
                         extra={"MULTIFLEXI_JOB_ID": labels.get(JOB_LABEL)})
        return removed
