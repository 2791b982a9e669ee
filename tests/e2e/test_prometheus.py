"""A real Prometheus server (Debian's package) scrapes the real daemon's metrics_listen;
its HTTP API tells the job counters by state, a template that missed its deadline and was
then done late, and counters that survive a restart of the daemon."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, program, running_daemon
from tests.support.factory import make_template, overdue_template
from tests.support.prometheus import Prometheus, free_port
from tests.support.servers import HttpRecorder, Reply


def of(metric: str, rt_id: int) -> str:
    return f'{metric}{{runtemplate_id="{rt_id}"}}'


def until_released(release: Path) -> str:
    """A job's script that runs until the test creates ``release`` (as long as the test
    needs to look at it running, no waiting for a fixed time that a busy machine may
    outlast)."""
    return f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.1; done"


def test_prometheus_scrapes_job_counters_and_a_late_template(
        core: Core, mf_env: Env, tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    # The bank import's ticks came while no daemon ran; its catch-up run takes a while.
    catch_up_ends = tmp_path / "catch-up-ends"
    late = overdue_template(core, name="bank import",
                            config={"SCRIPT": until_released(catch_up_ends)})
    ok = make_template(core, name="ok", interv="n", config={"SCRIPT": "true"})
    bad = make_template(core, company="globex", name="bad", interv="n",
                        config={"SCRIPT": "exit 3"})
    port = free_port()
    extra = {"MULTIFLEXI_METRICS_LISTEN": f"127.0.0.1:{port}"}
    with running_daemon(mf_env.vars(), tmp_path, extra_env=extra) as daemon, \
            Prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prom:
        prom.wait(prom.targets_up, "the daemon's target up")
        # While the catch-up run runs, its tick is past its deadline: missed.
        assert prom.wait(lambda: prom.value(
            of("multiflexi_runtemplate_deadline_missed", late)) == 1.0,
            "bank import missed")
        info = prom.query(of("multiflexi_runtemplate_info", late))
        assert info[0]["metric"]["name"] == "bank import"
        assert info[0]["metric"]["company"] == "acme"
        catch_up_ends.touch()
        for rt, times in ((ok, 2), (bad, 1)):
            for _ in range(times):
                job = daemon.call("runtemplate.run", id=rt)
                daemon.wait_job(job["id"])
        succeeded = 'multiflexi_jobs_total{company="acme",app="Shell",state="succeeded"}'
        failed = 'multiflexi_jobs_total{company="globex",app="Shell",state="failed"}'
        prom.wait(lambda: prom.value(succeeded) == 3.0 and prom.value(failed) == 1.0,
                  "3 succeeded (2 ok + the catch-up) and 1 failed")
        # Then it is done, late: the alert resolves, "late" says so.
        assert prom.wait(lambda: prom.value(
            of("multiflexi_runtemplate_deadline_late", late)) == 1.0,
            "bank import done late")
        assert prom.value(of("multiflexi_runtemplate_deadline_missed", late)) == 0
        assert prom.value('sum(multiflexi_deadline_misses_total{company="acme"})') == 1.0
        success = prom.value(of("multiflexi_runtemplate_last_success_timestamp_seconds", ok))
        assert success is not None and abs(success - datetime.now(UTC).timestamp()) < 120
        assert prom.value("multiflexi_job_duration_seconds_count"
                          '{company="acme",app="Shell"}') == 3.0
        assert prom.value('multiflexi_daemon_degraded{node="test-node"}') == 0.0
        assert prom.value("multiflexi_db_write_seconds_count") > 0  # type: ignore[operator]
        assert prom.value('multiflexi_node_heartbeat_age_seconds{node="test-node"}') < 30  # type: ignore[operator]
        # The listener speaks OpenMetrics to whoever asks for it (Prometheus does).
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"})
        with urllib.request.urlopen(request, timeout=10) as r:
            body = r.read().decode()
            assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert body.rstrip().endswith("# EOF")
        assert "job_id" not in body  # labels stay bounded
        total = "sum(multiflexi_jobs_total)"
        before = prom.value(total)
        daemon.stop()
        daemon.start()  # the counters come from the database: a restart is no reset
        restarted = datetime.now(UTC).timestamp()
        prom.wait(lambda: (prom.value("timestamp(multiflexi_jobs_running)") or 0) > restarted,
                  "a scrape of the restarted daemon")
        assert prom.value(total) == before == 4.0
        assert prom.value("resets(multiflexi_jobs_total"
                          '{company="acme",state="succeeded"}[5m])') == 0.0
        series = len(prom.query('{__name__=~"multiflexi_.*"}'))
    figures(f"prometheus scraping multiflexid: {series} multiflexi series")


def test_prometheus_sees_the_queue_its_lag_and_failed_deliveries(
        core: Core, mf_env: Env, tmp_path: Path, mfcli) -> None:  # type: ignore[no-untyped-def]
    """One job at a time: while a long one runs, three more wait — queued, and the oldest
    that could start waits longer and longer (the lag). A failure's webhook that its
    server refuses (HTTP 404: for good) counts as a failed delivery of its company."""
    long_ends = tmp_path / "long-ends"
    long = make_template(core, name="long", interv="n",
                         config={"SCRIPT": until_released(long_ends)})
    waiting = [make_template(core, name=f"waiting {i}", interv="n",
                             config={"SCRIPT": "true"}) for i in range(3)]
    broken = make_template(core, company="globex", name="broken", interv="n",
                           config={"SCRIPT": "exit 1"})
    port = free_port()
    extra = {"MULTIFLEXI_METRICS_LISTEN": f"127.0.0.1:{port}", "MULTIFLEXI_MAX_PARALLEL": "1"}
    with HttpRecorder([Reply(404, {"error": "no such hook"})]) as hook:
        r = mfcli("runtemplate", "action", "add", "--id", str(broken), "--on", "failure",
                  "--module", "WebHook", "--set", f"uri={hook.url()}")
        assert r.code == 0, r.err
        with running_daemon(mf_env.vars(), tmp_path, extra_env=extra) as daemon, \
                Prometheus(tmp_path, [f"127.0.0.1:{port}"]) as prom:
            prom.wait(prom.targets_up, "the daemon's target up")
            failed = 'multiflexi_action_deliveries_failed_total{company="globex"}'
            assert prom.value(failed) in (None, 0.0)
            job = daemon.wait_job(daemon.call("runtemplate.run", id=broken)["id"])
            assert job["state"] == "failed"
            assert prom.wait(lambda: prom.value(failed) == 1.0, "one failed delivery")
            assert prom.value("sum(multiflexi_action_deliveries_failed_total)") == 1.0
            assert prom.value("multiflexi_jobs_queued") == 0.0
            assert prom.value("multiflexi_queue_lag_seconds") == 0.0
            first = daemon.call("runtemplate.run", id=long)
            daemon.wait_job(first["id"], states=("running",))
            for rt in waiting:
                daemon.call("runtemplate.run", id=rt)
            # (On SQLite the daemon claims the next job ahead: it waits claimed, not queued.)
            queued = prom.wait(lambda: _count(daemon, "scheduled") >= 2
                               and _count(daemon, "scheduled"), "jobs waiting")
            assert prom.wait(lambda: prom.value("multiflexi_jobs_queued") == queued,
                             f"{queued} jobs queued")
            assert prom.wait(lambda: (prom.value("multiflexi_queue_lag_seconds") or 0) > 3,
                             "the lag growing")
            lag = prom.query("max_over_time(multiflexi_queue_lag_seconds[1m])")
            grew = float(lag[0]["value"][1])
            long_ends.touch()
            # Once the long job ends the queue drains: nothing waits, no lag.
            assert prom.wait(lambda: prom.value("multiflexi_jobs_queued") == 0.0
                             and prom.value("multiflexi_queue_lag_seconds") == 0.0,
                             "the queue drained", 90)
    assert grew > 3
    assert len(hook.received) == 1  # a 404 is not retried


def _count(daemon: DaemonProcess, state: str) -> int:
    return sum(1 for j in daemon.call("job.list", state=state)["items"])


def test_a_metrics_listen_it_cannot_use_stops_the_start_naming_it(
        core: Core, mf_env: Env, tmp_path: Path) -> None:
    core.ensure_schema()
    env = {**os.environ, **mf_env.vars(), "MULTIFLEXI_LOG_TARGET": "stderr"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for value, message in ((f"127.0.0.1:{port}", f"metrics_listen: cannot listen on "
                                f"127.0.0.1:{port}: Address already in use"),
                               ("9471", "metrics_listen: '9471' is not host:port")):
            r = subprocess.run([program("multiflexid")], capture_output=True, text=True,
                               env={**env, "MULTIFLEXI_METRICS_LISTEN": value}, timeout=60,
                               check=False)
            assert r.returncode == 1, r.stderr
            assert f"multiflexid: cannot start: {message}" in r.stderr
            assert "Traceback" not in r.stderr
