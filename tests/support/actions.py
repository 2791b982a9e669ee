"""The daemon's real action worker, run in the test's process until the ledger is done."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from multiflexid.actions.worker import ActionWorker
from multiflexid.core import Core
from multiflexid.dbthread import DbThread
from multiflexid.health import Health
from multiflexid.store.orm import ActionRun


def open_runs(core: Core) -> int:
    """Action runs due or under way."""
    with core.db.read_session() as s:
        return len(s.scalars(select(ActionRun.id).where(
            ActionRun.state.in_(("pending", "running")))).all())


def deliver(core: Core, timeout: float = 30) -> None:
    """Run the daemon's action worker (its own database thread) until no run is due or
    under way — a temporary failure's retry included (set a short action_retry_seconds)."""

    async def work() -> None:
        db = DbThread(core.db)
        worker = ActionWorker(core.settings, db, core.box, core.transitions, Health(),
                              one_node=core.db.is_sqlite)
        stopping = asyncio.Event()
        task = asyncio.create_task(worker.run(stopping))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not open_runs(core):
                        return
                    await asyncio.sleep(0.05)
        finally:
            stopping.set()
            await task
            db.close()

    asyncio.run(work())
