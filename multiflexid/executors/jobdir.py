"""Jobs' directories: made before a job is launched, removed once its artifacts are stored."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def remove_job_dir(path: Path, log_fields: dict[str, Any] | None = None) -> bool:
    """Remove ``path`` and everything in it; what cannot be removed is logged (naming the
    first failure, its owner and what to do), never silently left. True if it is gone."""
    failures: list[tuple[str, OSError]] = []

    def failed(_fn: Any, where: str, info: Any) -> None:
        exc = info[1]
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            failures.append((where, exc))

    shutil.rmtree(path, onerror=failed)  # (onexc from Python 3.12 on)
    if not failures:
        return True
    where, exc = failures[0]
    try:
        owner = os.lstat(where).st_uid
        whose = f", owned by uid {owner}" if owner != os.geteuid() else ""
    except OSError:
        whose = ""
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    log.warning("job directory %s was not removed: %s: %s%s%s; remove it with `rm -rf %s` "
                "as root", path, where, exc.strerror or exc, whose, more, path,
                extra=log_fields or {})
    return False



def make_job_dirs(paths: list[Path]) -> dict[Path, OSError]:
    """mkdir each (and the jobs' directory if need be); the errors, by path."""
    failed = {}
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            failed[path] = exc
    return failed


def remove_if_empty(path: Path) -> bool | None:
    """rmdir: True when removed, False when something is in it, None when it is gone."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise
    return True


class JobDirs:
    """Jobs' directories are made and removed in a thread of their own, in the order asked.

    On a busy disk a mkdir or an rmdir takes milliseconds (journal commits); the event loop,
    which launches and reaps the other jobs meanwhile, must not wait for it. A directory
    is asked for when its job is claimed (:meth:`make`), so it is usually there by the time
    the job is launched (:meth:`made`). Requests that queued up meanwhile are done in one
    go and answered with one wake-up of the loop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]] | None] = (
            queue.SimpleQueue())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._made: dict[Path, asyncio.Future[dict[Path, OSError]]] = {}

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` in the thread, after everything asked before."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            threading.Thread(target=self._run, name="mf-jobdirs", daemon=True).start()
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((fn, args, future))
        return future

    def make(self, paths: list[Path]) -> None:
        """Start making ``paths`` (their jobs were claimed), in one go; :meth:`made` waits
        for each."""
        paths = [p for p in paths if p not in self._made]
        if paths:
            made = self.call(make_job_dirs, paths)
            for path in paths:
                self._made[path] = made

    async def made(self, path: Path) -> None:
        """``path`` exists (asked for before, or now); OSError if it cannot be made."""
        future = self._made.pop(path, None) or self.call(make_job_dirs, [path])
        failed = (await future).get(path)
        if failed is not None:
            raise failed

    def discard(self, path: Path) -> asyncio.Future[bool | None]:
        """Remove the directory if it is empty, without waiting: a job that left nothing
        behind, or one that will not be launched here."""
        made = self._made.pop(path, None)
        if made is not None:
            made.add_done_callback(_retrieve)
        removed = self.call(remove_if_empty, path)
        removed.add_done_callback(_retrieve)
        return removed

    def close(self) -> None:
        if self._loop is not None:
            self._queue.put(None)

    def _run(self) -> None:
        assert self._loop is not None
        while True:
            item = self._queue.get()
            done: list[tuple[asyncio.Future[Any], bool, Any]] = []
            while item is not None:
                fn, args, future = item
                try:
                    done.append((future, True, fn(*args)))
                except Exception as exc:
                    done.append((future, False, exc))
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if done:
                with contextlib.suppress(RuntimeError):  # the loop is gone
                    self._loop.call_soon_threadsafe(_settle, done)
            if item is None:
                return


def _settle(done: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in done:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Nobody awaits it: its exception (logged elsewhere) is not "never retrieved"."""
    if not future.cancelled():
        future.exception()
