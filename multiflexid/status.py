"""``daemon.status`` pushed to its subscribers when what it says changes.

The daemon calls :meth:`StatusWatch.changed` whenever something the status shows may have
changed (a job started or ended, the periodic count of the queue, a component failing or
recovering). While anyone subscribed (``events.subscribe {status: true}``), the watch
builds the status at most every ``min_interval`` seconds and hands it to the socket,
which sends it to each subscriber whose last status (the one ``events.subscribe``
returned, or the last pushed) had another *signature*: degraded or not and why, running
and queued counts, stopping, the database reachable, each container engine reachable,
the text search index. The writer's ever-growing counters are not part of it.

It also checks the container engines (their API's ping) every ``engine_interval``
seconds, so ``daemon.status`` says whether each is reachable and a change is pushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from multiflexid.aio import nap

log = logging.getLogger(__name__)


def signature(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a subscriber is told about when it changes."""
    engines = doc.get("engines") or {}
    search = doc.get("search") or {}
    return (doc.get("degraded"), doc.get("status"), doc.get("running"), doc.get("queued"),
            doc.get("stopping"), (doc.get("database") or {}).get("reachable"),
            tuple(sorted((n, e.get("reachable")) for n, e in engines.items())),
            search.get("index"), search.get("warning"))


class StatusWatch:
    def __init__(self, build: Callable[[], Awaitable[dict[str, Any]]],
                 publish: Callable[[dict[str, Any]], None], wanted: Callable[[], bool],
                 engines: Mapping[str, Any], *, min_interval: float = 0.5,
                 engine_interval: float = 30.0, engine_timeout: float = 5.0) -> None:
        self.build = build
        self.publish = publish
        self.wanted = wanted
        self._checkers = {name: ex for name, ex in engines.items() if hasattr(ex, "check")}
        self.engines: dict[str, dict[str, Any]] = {
            name: {"reachable": None, "problem": "not checked yet"} for name in self._checkers}
        self.min_interval = min_interval
        self.engine_interval = engine_interval
        self.engine_timeout = engine_timeout
        self.wake = asyncio.Event()
        self.pushed = 0
        self._dirty = False

    def changed(self) -> None:
        """Something the status shows may have changed: push it soon if it did."""
        if self.wanted():
            self._dirty = True
            self.wake.set()

    async def check_engines(self) -> None:
        for name, executor in self._checkers.items():
            try:
                problem = await asyncio.wait_for(executor.check(), self.engine_timeout)
            except TimeoutError:
                problem = f"no answer within {self.engine_timeout:g} s"
            except Exception as exc:  # a check must never stop the watch
                problem = f"{type(exc).__name__}: {exc}"
            before = self.engines.get(name, {}).get("reachable")
            self.engines[name] = {"reachable": problem is None, "problem": problem}
            if before is not None and before != (problem is None):
                log.warning("%s engine %s", name,
                            "reachable again" if problem is None else f"unreachable: {problem}")
                self.changed()

    async def run(self, stopping: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        checked = float("-inf")
        while not stopping.is_set():
            if loop.time() - checked >= self.engine_interval:
                await self.check_engines()
                checked = loop.time()
            if self._dirty and self.wanted():
                self._dirty = False
                with contextlib.suppress(Exception):  # the database out: next time
                    await self.push()
                await nap(asyncio.Event(), stopping, self.min_interval)  # at most this often
            await nap(self.wake, stopping, checked + self.engine_interval - loop.time())

    async def push(self) -> None:
        self.pushed += 1
        self.publish(await self.build())
