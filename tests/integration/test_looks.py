"""An idle daemon's periodic looks (a template due? a queued job?) read the database again
only when someone committed to it since: on SQLite the CLI's change is still seen at the
next look, and nothing is read while nothing changes. PostgreSQL reads every time (NOTIFY
wakes the daemon there)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multiflexid.core import Core
from multiflexid.dbthread import DbThread
from multiflexid.store.orm import Schedule
from tests.conftest import Env
from tests.support.daemon import program
from tests.support.factory import make_template

READS: list[int] = []


def _queued(s: Session) -> int:
    READS.append(1)
    return s.scalar(select(func.count()).select_from(Schedule)) or 0


def test_a_look_reads_again_only_after_a_commit_by_anyone(core: Core, mf_env: Env) -> None:
    rt = make_template(core)
    db = DbThread(core.db)
    READS.clear()

    async def looks(n: int) -> list[Any]:
        return [await db.look(_queued) for _ in range(n)]

    try:
        assert asyncio.run(looks(3)) == [0, 0, 0]
        assert len(READS) == (1 if core.db.is_sqlite else 3)
        # The CLI, another process, queues a job straight into the database.
        queued = subprocess.run([program("multiflexi-cli"), "runtemplate", "run", "--id",
                                 str(rt)], env={**os.environ, **mf_env.vars()},
                                capture_output=True, text=True, timeout=60, check=False)
        assert queued.returncode == 0, queued.stderr
        assert asyncio.run(looks(2)) == [1, 1]
        assert len(READS) == (2 if core.db.is_sqlite else 5)
    finally:
        db.close()
