"""PostgreSQL stopped for 30 s (and restarted) while a job runs: nothing is lost.

Uses a PostgreSQL cluster of its own (fsync on), since the test stops it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from multiflexi.errors import StorageError
from multiflexi.settings import load_settings
from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, NotifyListener
from tests.support.factory import make_template
from tests.support.pgcluster import PgCluster

pytestmark = pytest.mark.fault

OUTAGE = 30.0


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with PgCluster(fsync=True) as cluster:
        yield cluster


def test_postgres_down_30s_daemon_survives_and_loses_nothing(
    own_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    figures: Callable[[str], None],
) -> None:
    env = Env(tmp_path / "data", own_cluster.url(), tmp_path / "mf.sock")
    env.data_dir.mkdir()
    for key, value in env.vars().items():
        monkeypatch.setenv(key, value)
    core = Core(load_settings())
    lines = 90
    rt = make_template(core, name="steady", config={
        "SCRIPT": f"i=1; while [ $i -le {lines} ]; do echo line $i; i=$((i+1)); "
                  "sleep 0.5; done"})
    core.close()
    notify = NotifyListener(tmp_path / "notify.sock")
    d = DaemonProcess(env.vars(), tmp_path, extra_env={
        "NOTIFY_SOCKET": str(notify.path), "MULTIFLEXI_HEARTBEAT_SECONDS": "1"}).start()
    try:
        job = d.call("runtemplate.run", id=rt)
        d.wait_job(job["id"], states=("running",))
        time.sleep(2)
        own_cluster.stop_server("fast")
        down_at = time.monotonic()
        notify.messages.clear()
        status = notify.wait_for("degraded", timeout=15)
        during = d.call("daemon.status")  # the daemon keeps serving from memory
        assert during["degraded"] is True
        with pytest.raises(StorageError):  # asking for stored things says why
            d.call("job.get", id=job["id"])
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        assert d.proc is not None and d.proc.poll() is None, d.log()
        own_cluster.start_server()
        done = d.wait_job(job["id"], timeout=120)
        notify.messages.clear()
        notify.wait_for("STATUS=0 running", timeout=15)
        out = d.output(job["id"])
    finally:
        notify.close()
        d.stop()
    assert done["state"] == "succeeded", d.log()
    expected = "".join(f"line {i}\n" for i in range(1, lines + 1))
    figures(f"PostgreSQL down {OUTAGE:g} s: status said {status.split('STATUS=')[-1]!r}; "
          f"job {job['id']} {done['state']}, {out.count(chr(10))}/{lines} lines kept in order")
    assert out == expected


def test_stopping_while_postgres_is_down_exits_and_the_job_is_found_lost_after(
    own_cluster: PgCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM with the database out: the daemon still stops (in stop_grace + the end-write
    grace, not forever as systemd's TimeoutStopSec would have to end it), says in its log
    which end it could not record, and the next start records that job as lost."""
    env = Env(tmp_path / "data", own_cluster.url(), tmp_path / "mf.sock")
    env.data_dir.mkdir()
    for key, value in env.vars().items():
        monkeypatch.setenv(key, value)
    core = Core(load_settings())
    rt = make_template(core, name="long", config={"SCRIPT": "sleep 300"})
    core.close()
    extra = {"MULTIFLEXI_HEARTBEAT_SECONDS": "1", "MULTIFLEXI_STOP_GRACE_SECONDS": "1"}
    d = DaemonProcess(env.vars(), tmp_path, extra_env=extra).start()
    job = d.call("runtemplate.run", id=rt)
    d.wait_job(job["id"], states=("running",))
    own_cluster.stop_server("fast")
    time.sleep(1)
    d.stop(timeout=45)  # raises if it does not stop
    log = d.log()
    assert f"job {job['id']} ended (cancelled" in log and "not recorded" in log, log
    own_cluster.start_server()
    again = DaemonProcess(env.vars(), tmp_path, extra_env=extra).start()
    try:
        after = again.wait_job(job["id"], states=("lost",), timeout=60)
    finally:
        again.stop()
    assert after["state"] == "lost", after
