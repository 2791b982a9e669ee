"""``multiflexi-cli check``: a Nagios/Icinga plugin's exit code for each state, its one
status line and its perfdata, over the real daemon (or its absence) and the database."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from multiflexi.errors import DaemonUnavailable
from multiflexid.core import Core
from multiflexid.services import jobs
from multiflexid.store.orm import RunTemplate
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.factory import make_template, overdue_template, run_to_end

PERF = re.compile(r"^MULTIFLEXI (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+ \| (\S+=\S+ ?)+$")


def _failed_job(core: Core, rt_id: int, when: datetime) -> None:
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        job = jobs.create_job(s, core.transitions, rt, schedule_type="adhoc", launched_by="t",
                              after=when, box=core.box)
    with core.db.session() as s:
        assert core.transitions.claim(s, when, "n1", 10) == [job.id]
    with core.db.session() as s:
        run_to_end(core, s, job.id, when, exitcode=1)


def test_ok_with_the_daemon_up(core: Core, mfcli, mf_env: Env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_template(core, interv="n")
    with running_daemon(mf_env.vars(), tmp_path):
        r = mfcli("check")
    assert r.code == 0, r.out
    assert PERF.match(r.out.strip()), r.out
    assert r.out.startswith("MULTIFLEXI OK - all jobs and deadlines fine | missed=0;;1;0 "
                            "failed=0;1;;0 lag=0s;300;1800;0 queued=0;;;0 running=0;;;0")


def test_warning_for_a_job_that_failed_in_the_window(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    rt_id = make_template(core, name="import", interv="n")
    _failed_job(core, rt_id, datetime.now(UTC) - timedelta(hours=1))
    r = mfcli("check", "--no-daemon")
    assert r.code == 1, r.out
    assert r.out.startswith("MULTIFLEXI WARNING - 1 job(s) failed (import) | missed=0;;1;0 "
                            "failed=1;1;;0")
    assert mfcli("check", "--no-daemon", "--window", "30m").code == 0  # before the window
    assert mfcli("check", "--no-daemon", "--failed-critical", "1").code == 2
    other = make_template(core, company="globex", name="other", interv="n")
    assert mfcli("check", "--no-daemon", "--company", "globex").code == 0
    assert mfcli("check", "--no-daemon", "--runtemplate", str(other)).code == 0
    assert mfcli("check", "--no-daemon", "--runtemplate", str(rt_id)).code == 1
    doc = mfcli("check", "--no-daemon", "--format", "json")
    assert doc.code == 1 and doc.json["status"] == "WARNING"
    assert [f["name"] for f in doc.json["failed"]] == ["import"]


def test_a_failure_a_retry_took_over_is_not_one(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    rt_id = make_template(core, name="flaky", interv="n", max_attempts=2, retry_min_gap=0)
    now = datetime.now(UTC) - timedelta(minutes=6)
    _failed_job(core, rt_id, now)  # its retry is queued: not a failure yet
    r = mfcli("check", "--no-daemon", "--lag-warning", "0")
    assert (r.code, "failed=0;" in r.out) == (0, True), r.out
    # ...but nothing ran it for 6 minutes: the queue lags
    r = mfcli("check", "--no-daemon")
    assert r.code == 1 and r.out.startswith("MULTIFLEXI WARNING - queue lag 6m"), r.out
    assert mfcli("check", "--no-daemon", "--lag-critical", "5m").code == 2


def test_critical_for_a_missed_deadline_and_for_the_daemon_down(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    overdue_template(core, name="bank import")
    with core.db.session() as s:  # the tracker, as the daemon's would have
        core.deadlines.sweep(s, datetime.now(UTC))
    r = mfcli("check", "--no-daemon")
    assert r.code == 2, r.out
    assert r.out.startswith("MULTIFLEXI CRITICAL - 1 tick(s) missed the deadline (bank "
                            "import) | missed=1;;1;0")
    assert mfcli("check", "--no-daemon", "--missed-critical", "0",
                 "--missed-warning", "1").code == 1
    down = mfcli("check", "--missed-critical", "0")
    assert down.code == 2 and "multiflexid not running (multiflexid is not running (no " \
        "socket at" in down.out


@pytest.mark.parametrize("args", [
    ("--window", "soon"), ("--bogus",), ("--failed-warning", "-1"),
])
def test_unknown_for_bad_usage(mfcli, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    r = mfcli("check", "--no-daemon", *args)
    assert r.code == 3, (r.out, r.err)


def test_unknown_when_it_cannot_look(core: Core, mfcli, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                     tmp_path: Path) -> None:
    make_template(core, interv="n")
    r = mfcli("check", "--no-daemon", "--company", "nosuch")
    assert r.code == 3 and r.out.startswith(
        "MULTIFLEXI UNKNOWN - no company with id or slug 'nosuch'"), r.out
    monkeypatch.setenv("MULTIFLEXI_DATABASE_URL",
                       "postgresql+psycopg://nobody@/nothing?host=" + str(tmp_path / "none"))
    r = mfcli("check", "--no-daemon")
    assert r.code == 3 and r.out.startswith("MULTIFLEXI UNKNOWN - "), r.out


@contextlib.contextmanager
def _writes_refused(mf_env: Env, backend: str, request: pytest.FixtureRequest
                    ) -> Iterator[None]:
    """The database still answers reads but refuses the daemon's writes: on SQLite another
    process holds its write lock (the daemon's writes give up after sqlite_busy_seconds);
    on PostgreSQL the database turns read-only (as a standby is) and the daemon's sessions
    are ended, so the new ones are read-only."""
    url = make_url(mf_env.db_url)
    if backend == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
        return
    cluster = request.getfixturevalue("pg_cluster")
    kick = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{url.database}' AND pid <> pg_backend_pid()")
    cluster.psql(f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on')
    cluster.psql(kick)
    try:
        yield
    finally:
        cluster.psql(f'ALTER DATABASE "{url.database}" RESET default_transaction_read_only')
        cluster.psql(kick)


def _wait_degraded(d: DaemonProcess, degraded: bool, timeout: float = 90) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            status: dict[str, Any] = d.call("daemon.status")
        except DaemonUnavailable:
            raise AssertionError(f"the daemon ended:\n{d.log()}") from None
        if status["degraded"] is degraded:
            return status
        time.sleep(0.2)
    raise AssertionError(f"daemon degraded is not {degraded}:\n{d.log()}")


def test_warning_while_the_daemon_is_degraded(core: Core, mfcli, mf_env: Env,  # type: ignore[no-untyped-def]
                                             backend: str, request: pytest.FixtureRequest,
                                             tmp_path: Path) -> None:
    make_template(core, interv="n")
    busy = {"MULTIFLEXI_SQLITE_BUSY_SECONDS": "2"}  # (SQLite: locked writes fail after 2 s)
    with running_daemon(mf_env.vars(), tmp_path, extra_env=busy) as d:
        assert mfcli("check").code == 0
        with _writes_refused(mf_env, backend, request):
            _wait_degraded(d, True)
            r = mfcli("check")
        assert r.code == 1, r.out
        assert r.out.startswith("MULTIFLEXI WARNING - multiflexid degraded: "), r.out
        why = r.out.split(" | ")[0]  # what the daemon says is wrong: its database
        assert any(w in why for w in ("database is locked", "read-only transaction")), why
        assert PERF.match(r.out.strip()), r.out
        _wait_degraded(d, False)
        again = mfcli("check")
    assert again.code == 0, again.out
