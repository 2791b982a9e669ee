"""The real daemon in the test's own event loop, with the in-memory FakeExecutor: the
dispatcher, the group-committing writer and the socket server with its real handlers,
fast and inspectable (tests of the hot path; the e2e tests run the real program)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from multiflexi.client import AsyncClient
from multiflexi.settings import load_settings
from multiflexid.daemon import Daemon
from multiflexid.executors.fake import FakeExecutor
from tests.conftest import Env


@dataclass
class InProcess:
    daemon: Daemon
    fake: FakeExecutor
    client: AsyncClient
    events: asyncio.Queue[tuple[str, dict[str, Any]]]

    async def call(self, method: str, **params: Any) -> Any:
        return await self.client.call(method, **params)

    async def job(self, job_id: int) -> dict[str, Any]:
        job: dict[str, Any] = await self.call("job.get", id=job_id)
        return job

    async def wait_state(self, job_id: int, *states: str, within: float = 10.0
                         ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                job = await self.job(job_id)
                if job["state"] in states:
                    return job
                await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def daemon_in_process(env: Env, engines: dict[str, Any] | None = None,
                            **settings: str) -> AsyncIterator[InProcess]:
    """``settings``: environment-style overrides, e.g. MULTIFLEXI_MAX_PARALLEL="1";
    ``engines``: more executors by name (e.g. a container engine whose ``check()`` the
    test decides)."""
    config = load_settings(os.devnull, env={**env.vars(), **settings})
    fake = FakeExecutor()
    daemon = Daemon(config, executors={"Native": fake, **(engines or {})})
    serving = asyncio.create_task(daemon.serve(), name="daemon")
    async with asyncio.timeout(20):
        while not env.socket.exists() or not hasattr(daemon, "rpc"):
            if serving.done():
                serving.result()  # its start-up error
            await asyncio.sleep(0.02)
    events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    client = await AsyncClient.connect(
        env.socket, on_notification=lambda m, p: events.put_nowait((m, p)))
    try:
        yield InProcess(daemon, fake, client, events)
    finally:
        await client.close()
        daemon._on_signal(signal.SIGTERM)
        await asyncio.wait_for(serving, 30)
