"""The real multiflexid on SQLite and on PostgreSQL: jobs end to end through the socket."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from multiflexi.client import Client
from multiflexi.errors import Conflict, DaemonUnavailable, InternalError, InvalidInput
from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, NotifyListener, running_daemon
from tests.support.factory import make_template, overdue_template, refuse, shell_app


@pytest.fixture
def daemon(mf_env: Env, core: Core, tmp_path: Path) -> Iterator[DaemonProcess]:
    core.ensure_schema()
    with running_daemon(mf_env.vars(), tmp_path) as d:
        yield d


def _run(d: DaemonProcess, rt_id: int, **env: str) -> dict:
    return d.call("runtemplate.run", id=rt_id, env=env)


def test_job_output_exit_code_and_state(core: Core, daemon: DaemonProcess) -> None:
    rt = make_template(core, config={"SCRIPT": "echo out-line; echo err-line >&2; exit 3"})
    job = _run(daemon, rt)
    assert job["state"] in ("scheduled", "running")
    assert job["launched_by"] == "root" or job["launched_by"] == os.environ.get("USER")
    done = daemon.wait_job(job["id"])
    assert done["state"] == "failed"
    assert done["exitcode"] == 3
    assert done["command"] == ["sh", "-c", "echo out-line; echo err-line >&2; exit 3"]
    assert done["node"] == "test-node"
    assert done["begin"] and done["end"] and done["pid"]
    page = daemon.call("job.output", id=job["id"])
    streams = {c["stream"]: c["data"] for c in page["chunks"]}
    assert streams["stdout"] == "out-line\n"
    assert streams["stderr"] == "err-line\n"
    assert page["done"] is True
    ok = daemon.wait_job(_run(daemon, rt, SCRIPT="echo fine")["id"])
    assert (ok["state"], ok["exitcode"]) == ("succeeded", 0)


def test_values_arrive_literally_and_secrets_are_masked(core: Core, daemon: DaemonProcess) -> None:
    rt = make_template(core, config={"SCRIPT": 'printf "%s|" "$TOKEN" "$1"; echo'})
    nasty = "a b $(id) ; rm -rf / 'q' \"dq\" č"
    job = daemon.wait_job(_run(daemon, rt, TOKEN=nasty)["id"])
    assert job["state"] == "succeeded", daemon.output(job["id"])
    out = daemon.output(job["id"])
    assert nasty not in out  # the token is a password field: masked in the output
    assert "********|" in out
    assert job["environment"]["TOKEN"] == "********"
    plain = make_template(core, name="plain", config={"SCRIPT": 'printf "[%s]" "$VALUE"'})
    job = daemon.wait_job(_run(daemon, plain, VALUE=nasty)["id"])
    assert daemon.output(job["id"]) == f"[{nasty}]"


def test_undeclared_secrets_are_masked_too(core: Core, daemon: DaemonProcess) -> None:
    """One-off values the app does not declare: a key named like a secret, and one the
    caller marks secret, are masked in the output and the job's record."""
    rt = make_template(core, config={"SCRIPT": 'echo "$API_TOKEN $EXTRA $COLOR"'})
    job = daemon.call("runtemplate.run", id=rt, secret_keys=["EXTRA"], env={
        "API_TOKEN": "tok-undeclared-1", "EXTRA": "marked-secret-2", "COLOR": "green"})
    job = daemon.wait_job(job["id"])
    assert daemon.output(job["id"]) == "******** ******** green\n"
    env = job["environment"]
    assert (env["API_TOKEN"], env["EXTRA"], env["COLOR"]) == ("********", "********", "green")


def test_timeout_stops_the_whole_process_group(core: Core, daemon: DaemonProcess,
                                               tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    rt = make_template(core, timeout=1, config={
        "SCRIPT": f"sleep 60 & echo $! > {pidfile}; echo started; wait"})
    job = daemon.wait_job(_run(daemon, rt)["id"], timeout=40)
    assert job["state"] == "timed_out"
    assert "timed out after 1 s" in job["reason"]
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(
        f"/proc/{child}/status").read_text()


def test_cancel_a_running_job(core: Core, daemon: DaemonProcess) -> None:
    rt = make_template(core, config={"SCRIPT": "echo going; sleep 60"})
    job = _run(daemon, rt)
    daemon.wait_job(job["id"], states=("running",))
    for _ in range(100):  # wait until its output shows it really started
        if "going" in daemon.output(job["id"]):
            break
        time.sleep(0.05)
    reply = daemon.call("job.cancel", id=job["id"])
    assert reply["cancel"] == "requested"
    done = daemon.wait_job(job["id"])
    assert done["state"] == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        daemon.call("job.cancel", id=job["id"])


def test_missing_required_configuration_blocks_without_launching(
    core: Core, daemon: DaemonProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "launched"
    doc = shell_app("Needy", f"touch {marker}")
    doc["environment"]["API_URL"] = {"type": "url", "description": "server", "required": True}
    rt = make_template(core, app_doc=doc, name="needy")
    job = daemon.wait_job(_run(daemon, rt)["id"])
    assert job["state"] == "blocked"
    assert "API_URL" in job["reason"]
    assert not marker.exists()
    with pytest.raises(InvalidInput, match="API_URL"):
        _run(daemon, rt, API_URL="not a url")


def test_jobs_of_one_template_never_overlap(core: Core, daemon: DaemonProcess) -> None:
    rt = make_template(core, config={"SCRIPT": "sleep 1; date +%s.%N"})
    first, second = _run(daemon, rt), _run(daemon, rt)
    assert second["state"] == "pending" or first["state"] == "scheduled"
    a, b = daemon.wait_job(first["id"]), daemon.wait_job(second["id"])
    assert a["state"] == b["state"] == "succeeded"
    assert b["begin"] >= a["end"]


def test_a_job_queued_behind_many_of_one_template_starts_beside_them(
        core: Core, daemon: DaemonProcess) -> None:
    """The head of the queue full of one template's jobs (they run one after another)
    holds back no other template's job queued behind them: it runs while the first
    of them still does, not after all of them."""
    slow = make_template(core, name="slow", config={"SCRIPT": "sleep 2"})
    quick = make_template(core, name="quick", config={"SCRIPT": "echo quick"})
    first = _run(daemon, slow)
    for _ in range(59):  # more than a claim looks at in the head of the queue
        _run(daemon, slow)
    behind = daemon.wait_job(_run(daemon, quick)["id"])
    running = daemon.call("job.get", id=first["id"])
    assert behind["state"] == "succeeded"
    assert running["state"] == "running", running
    assert behind["begin"] < daemon.wait_job(first["id"])["end"]


@pytest.mark.parametrize("backend", ["postgresql"])  # (SQLite: its looks, tests/integration)
def test_a_template_made_due_by_another_program_wakes_the_daemon(
        mf_env: Env, core: Core, tmp_path: Path) -> None:
    """A template another program makes due (here a direct write, as the CLI does) is run
    at once: its change NOTIFYs the daemon, which otherwise looks only every poll_seconds
    (30 s here, and five times that while LISTEN is up)."""
    core.ensure_schema()
    with running_daemon({**mf_env.vars(), "MULTIFLEXI_POLL_SECONDS": "30"}, tmp_path) as d:
        time.sleep(1)  # idle: the scheduler's first look is behind it
        rt = overdue_template(core)
        deadline = time.monotonic() + 15
        jobs: list[dict] = []
        while not jobs and time.monotonic() < deadline:
            jobs = d.call("job.list", runtemplate_id=rt)["items"]
            time.sleep(0.2)
        assert jobs, "the daemon did not notice the template within 15 s"
        assert d.wait_job(jobs[0]["id"])["state"] == "succeeded"


def test_job_changes_and_output_are_pushed(core: Core, daemon: DaemonProcess) -> None:
    rt = make_template(core, config={"SCRIPT": "echo one; sleep 1; echo two"})
    with daemon.client() as c:
        c.call("events.subscribe", jobs=True, runtemplates=True)
        job = c.call("runtemplate.run", id=rt)
        c.call("events.subscribe", job_output=job["id"])
        seen_output: list[str] = []
        states: list[str] = []
        ended: dict = {}
        for method, params in c.notifications(timeout=20):
            if method == "job.output":
                seen_output.append(params["data"])
            elif method == "job.changed" and params["job"]["id"] == job["id"]:
                states.append(params["job"]["state"])
                if params["job"]["state"] == "succeeded":
                    ended = params["job"]
            elif method == "runtemplate.changed" and ended:
                template = params["runtemplate"]
                break
    assert "".join(seen_output) == "one\ntwo\n"
    assert "running" in states  # the start is pushed, not only the end
    assert states[-1] == "succeeded"
    assert ended["app"] == "Shell" and ended["company"] == "acme"  # the whole job view
    assert template["id"] == rt and template["successful_jobs_count"] == 1
    assert template["last_job"]["id"] == job["id"]


def test_malformed_and_oversized_frames_close_only_that_connection(
    daemon: DaemonProcess,
) -> None:
    with daemon.client() as good:
        for frame in (b"this is not json\n", b'{"jsonrpc": "2.0", "id": 1}\n',
                      b"x" * (2 * 1024 * 1024) + b"\n"):
            raw = socket.socket(socket.AF_UNIX)
            raw.connect(str(daemon.socket))
            try:
                raw.sendall(frame)
            except BrokenPipeError:
                pass
            raw.settimeout(10)
            reply = b""
            while True:
                try:
                    data = raw.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break  # the daemon closed this connection
                reply += data
            raw.close()
            assert b'"error"' in reply, frame[:40]
        assert good.call("daemon.status")["pid"] == daemon.proc.pid  # type: ignore[union-attr]


def test_a_user_outside_group_multiflexi_is_refused(mf_env: Env, core: Core,
                                                    tmp_path: Path) -> None:
    core.ensure_schema()
    public = Path(tempfile.mkdtemp(prefix="mf-peer-"))  # reachable by uid 65534
    public.chmod(0o755)
    env = {**mf_env.vars(), "MULTIFLEXI_SOCKET": str(public / "mf.sock")}
    code = (
        "import os, sys\n"
        "from multiflexi.client import Client\n"
        "from multiflexi.errors import Forbidden\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        f"    Client({str(public / 'mf.sock')!r}).call('daemon.status')\n"
        "except Forbidden as e:\n"
        "    print('REFUSED', e.message); sys.exit(0)\n"
        "print('SERVED'); sys.exit(1)\n"
    )
    try:
        with running_daemon(env, tmp_path) as d:
            os.chmod(d.socket, 0o666)  # past the file mode: the daemon itself must refuse
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True,
                                  text=True, timeout=30, check=False)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "REFUSED" in proc.stdout and "group multiflexi" in proc.stdout
            assert "nobody" in proc.stdout
            assert d.call("daemon.status")["user"] == "root"  # root still served
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_missing_daemon_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="not running"):
        Client(tmp_path / "nothing.sock")


def test_sigterm_drains_running_jobs(mf_env: Env, core: Core, tmp_path: Path) -> None:
    core.ensure_schema()
    short = make_template(core, name="short", config={"SCRIPT": "sleep 1; echo finished"})
    long = make_template(core, name="long", config={"SCRIPT": "echo started; sleep 120"})
    notify = NotifyListener(tmp_path / "notify.sock")
    d = DaemonProcess(mf_env.vars(), tmp_path, extra_env={
        "NOTIFY_SOCKET": str(notify.path), "MULTIFLEXI_STOP_GRACE_SECONDS": "3"}).start()
    try:
        a, b = _run(d, short), _run(d, long)
        d.wait_job(a["id"], states=("running",))
        d.wait_job(b["id"], states=("running",))
        started = time.monotonic()
        assert d.stop(signal.SIGTERM) == 0
        elapsed = time.monotonic() - started
        notify.wait_for("STOPPING=1")
    finally:
        notify.close()
    with core.db.read_session() as s:
        from multiflexid.services.jobs import get_job

        assert get_job(s, a["id"]).state == "succeeded"
        assert get_job(s, b["id"]).state == "cancelled"
    assert elapsed < 3 + 3 + 10  # grace for the job, grace for its SIGTERM, slack


def test_kill9_then_restart_leaves_nothing_running(mf_env: Env, core: Core,
                                                   tmp_path: Path) -> None:
    core.ensure_schema()
    ids = []
    d = DaemonProcess(mf_env.vars(), tmp_path).start()
    for i in range(3):
        rt = make_template(core, name=f"long{i}", config={"SCRIPT": "sleep 60"})
        ids.append(_run(d, rt)["id"])
    pids = [d.wait_job(job_id, states=("running",))["pid"] for job_id in ids]
    d.kill9()
    d2 = DaemonProcess(mf_env.vars(), tmp_path).start()
    try:
        for job_id in ids:
            job = d2.call("job.get", id=job_id)
            assert job["state"] == "lost"
            assert "stopped while the job ran" in job["reason"]
    finally:
        d2.stop()
        # The orphaned jobs, each its own process group; not `pkill -f "sleep 60"`, which
        # also hits other programs' sleeps on the machine (other test runs, containers).
        for pid in pids:
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def test_sd_notify_ready_status_watchdog_stopping(mf_env: Env, core: Core,
                                                  tmp_path: Path) -> None:
    core.ensure_schema()
    notify = NotifyListener(tmp_path / "n.sock")
    d = DaemonProcess(mf_env.vars(), tmp_path, extra_env={
        "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "600000"}).start(wait=False)
    try:
        ready = notify.wait_for("READY=1")
        assert "STATUS=0 running, 0 queued" in ready
        notify.messages.clear()
        notify.wait_for("WATCHDOG=1", timeout=5)
        notify.messages.clear()
        notify.wait_for("WATCHDOG=1", timeout=5)  # again: it keeps coming from the loop
        d.wait_ready()
        assert d.stop() == 0
        notify.wait_for("STOPPING=1")
    finally:
        notify.close()


def test_second_daemon_on_one_sqlite_database_refuses(tmp_path: Path) -> None:
    """SQLite only (PostgreSQL is where several nodes share a database)."""
    env = Env(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'mf.db'}",
              tmp_path / "first.sock")
    with running_daemon(env.vars(), tmp_path):
        second_env = {**env.vars(), "MULTIFLEXI_SOCKET": str(tmp_path / "second.sock")}
        second = DaemonProcess(second_env, tmp_path).start(wait=False)
        assert second.proc is not None
        assert second.proc.wait(30) == 1
        assert "another multiflexid" in second.log()
        assert "use PostgreSQL for several nodes" in second.log()


def test_artifacts_and_result_report_reach_the_job(core: Core, daemon: DaemonProcess) -> None:
    import base64
    import json as _json

    report = {"producer": "t", "status": "warning", "timestamp": "2026-05-01T10:00:00Z",
              "message": "half done", "metrics": {"rows": 7}}
    doc = shell_app("Artsy")
    doc["environment"]["RESULT_FILE"] = {"type": "string", "description": "report",
                                         "defval": "report.json"}
    doc["artifacts"] = [{"name": "data", "path": r"data_\d+\.csv", "type": "csv"}]
    script = ("printf 'a,b\\n' > data_1.csv; echo junk > junk.tmp; "
              f"printf '%s' '{_json.dumps(report)}' > \"$RESULT_FILE\"; "
              "test \"$(pwd)\" = \"$MULTIFLEXI_TMP\"")
    rt = make_template(core, app_doc=doc, name="artsy", config={"SCRIPT": script})
    job = daemon.wait_job(_run(daemon, rt)["id"])
    assert job["state"] == "succeeded", daemon.output(job["id"])
    files = {a["filename"]: a for a in job["artifacts"]}
    assert set(files) == {"data_1.csv", "report.json"}
    assert files["data_1.csv"]["name"] == "data"
    assert files["data_1.csv"]["content_type"] == "text/csv"
    got = daemon.call("artifact.get", id=files["data_1.csv"]["id"])
    assert base64.b64decode(got["content_base64"]) == b"a,b\n"
    assert job["report"] == {"status": "warning", "message": "half done",
                             "metrics": {"rows": 7}}
    out = daemon.output(job["id"])
    assert "not kept (not declared as artifacts): junk.tmp" in out
    assert not Path(job["environment"]["MULTIFLEXI_TMP"]).exists()  # cleaned up after


def test_failed_job_is_retried_as_the_template_says(core: Core, daemon: DaemonProcess) -> None:
    rt = make_template(core, name="flaky", max_attempts=3, retry_backoff="fixed",
                       retry_min_gap=0, config={"SCRIPT": "echo attempt $MULTIFLEXI_JOB_ID; "
                                                          "exit 1"})
    first = daemon.wait_job(_run(daemon, rt)["id"])
    assert first["state"] == "failed"
    chain = [first]
    for _ in range(2):
        listing = daemon.call("job.list", runtemplate_id=rt)["items"]
        nxt = next(j for j in listing if j["retry_of"] == chain[-1]["id"])
        chain.append(daemon.wait_job(nxt["id"]))
    assert [j["attempt"] for j in chain] == [1, 2, 3]
    assert [j["schedule_type"] for j in chain] == ["adhoc-api", "retry", "retry"]
    assert all(j["state"] == "failed" for j in chain)
    time.sleep(1.5)  # the third attempt was the last: no fourth job appears
    assert len(daemon.call("job.list", runtemplate_id=rt)["items"]) == 3


def test_output_over_the_cap_is_dropped_with_a_marker(mf_env: Env, core: Core,
                                                      tmp_path: Path) -> None:
    core.ensure_schema()
    rt = make_template(core, name="chatty", config={
        "SCRIPT": "i=0; while [ $i -lt 200 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx; "
                  "i=$((i+1)); done"})
    with running_daemon(mf_env.vars(), tmp_path,
                        extra_env={"MULTIFLEXI_OUTPUT_CAP_BYTES": "1000"}) as d:
        job = d.wait_job(_run(d, rt)["id"])
        out = d.output(job["id"])
    assert job["state"] == "succeeded"
    kept = [line for line in out.splitlines() if line.startswith("line-")]
    assert 0 < len(kept) < 200 and kept[0] == "line-0-xxxxxxxxxxxxxxxxxxxx"
    assert sum(len(line) + 1 for line in kept) <= 1000  # whole lines, within the cap
    assert "output cap of 1000 bytes reached" in out
    total = sum(len(f"line-{i}-xxxxxxxxxxxxxxxxxxxx\n") for i in range(200))
    assert job["output_dropped"] == total - sum(len(line) + 1 for line in kept)
    assert f"{job['output_dropped']} bytes of output over the 1000-byte cap were dropped" in out


def test_start_up_problems_are_one_clear_line(tmp_path: Path) -> None:
    """A socket or data dir it cannot make: exit 1 with the path and what to check, no
    traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cases = [
        ({"MULTIFLEXI_SOCKET": str(blocker / "mf.sock")},
         f"cannot listen on {blocker / 'mf.sock'}: File exists"),
        ({"MULTIFLEXI_DATA_DIR": str(blocker / "data")},
         f"cannot create the database's directory {blocker / 'data'}: Not a directory"),
    ]
    for extra, message in cases:
        env = {**Env(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'mf.db'}",
                     tmp_path / "mf.sock").vars(), "MULTIFLEXI_DATABASE_URL": ""}
        d = DaemonProcess({**env, **extra}, tmp_path).start(wait=False)
        assert d.proc is not None and d.proc.wait(30) == 1
        out = d.log()
        assert f"multiflexid: cannot start: {message}" in out, out
        assert "Traceback" not in out


def test_an_internal_error_tells_the_client_an_id_not_the_sql(
        core: Core, daemon: DaemonProcess) -> None:
    """The reply names the error and an id; the SQL and its parameters stay in the
    journal (stderr here), with the traceback, under that id."""
    rt = make_template(core, name="secret-name-in-params")
    refuse(core, "UPDATE", "runtemplate")
    with pytest.raises(InternalError) as caught:
        daemon.call("runtemplate.set_active", id=rt, active=False)
    err = caught.value
    eid = err.data["error_id"]
    assert err.message == (f"internal error in runtemplate.set_active (error id {eid}; its "
                           f"traceback is in the daemon's journal: journalctl "
                           f"MULTIFLEXI_ERROR_ID={eid})")
    with pytest.raises(InternalError) as again:  # the same bug, the same id
        daemon.call("runtemplate.set_active", id=rt, active=False)
    assert again.value.data["error_id"] == eid
    log = daemon.log()
    assert "method runtemplate.set_active: " in log and f"(error id {eid})" in log
    assert log.count(f"(error id {eid})\nTraceback") == 1  # once, with the statement
    assert "UPDATE runtemplate" in log
    assert daemon.call("daemon.status")["degraded"] is False  # one method's bug


def test_a_failing_dispatcher_logs_its_traceback_once_and_says_degraded(
        core: Core, daemon: DaemonProcess) -> None:
    """A bug in the dispatch loop is not an endless one-line 'database' error every 2 s:
    its traceback once, and the status says degraded and why."""
    rt = make_template(core)
    refuse(core, "UPDATE", "job")
    daemon.call("runtemplate.run", id=rt)
    deadline = time.monotonic() + 20
    status: dict = {}
    while time.monotonic() < deadline:
        status = daemon.call("daemon.status")
        if "dispatcher: " in status["status"] and daemon.log().count("(error id ") >= 2:
            break
        time.sleep(0.2)
    assert status["degraded"] is True, status
    assert status["status"].startswith("degraded: dispatcher: "), status
    eid = status["status"].split("(error id ", 1)[1][:10]
    log = daemon.log()
    assert log.count(f"(error id {eid})\nTraceback") == 1, log
    assert log.count(f"error id {eid}") >= 2, log
    assert "boom" in status["status"] and "UPDATE" not in status["status"]


def test_a_failing_scheduler_logs_its_traceback_once_and_says_degraded(
        core: Core, daemon: DaemonProcess) -> None:
    """A bug in a scheduler tick (here: every new job refused) is not an endless one-line
    error every 2 s: its traceback once, and the status says degraded and why."""
    refuse(core, "INSERT", "job")
    make_template(core, interv="i", now=datetime.now(UTC) - timedelta(hours=1))  # due now
    deadline = time.monotonic() + 20
    status: dict = {}
    while time.monotonic() < deadline:
        status = daemon.call("daemon.status")
        if "scheduler: " in status["status"] and daemon.log().count("(error id ") >= 2:
            break
        time.sleep(0.2)
    assert status["degraded"] is True, status
    assert status["status"].startswith("degraded: scheduler: "), status
    eid = status["status"].split("(error id ", 1)[1][:10]
    log = daemon.log()
    assert log.count(f"(error id {eid})\nTraceback") == 1, log
    assert log.count(f"error id {eid}") >= 2, log  # again, in one line
    assert 'multiflexid/scheduler.py", line' in log  # the traceback is the tick's
    assert "boom" in status["status"] and "INSERT" not in status["status"]


def test_template_views_show_when_the_next_job_is_due(core: Core,
                                                       daemon: DaemonProcess) -> None:
    """The socket's template views (what the TUI shows as "Next") say when the job will be
    due: the tick plus the template's delay; the tick itself is ``next_tick``."""
    rt = make_template(core, interv="h", delay=90)
    shown = daemon.call("runtemplate.get", id=rt)
    assert shown["next_tick"].endswith(":00:00Z")
    assert shown["next_schedule"] == shown["next_tick"].replace(":00:00Z", ":01:30Z")
    [listed] = daemon.call("runtemplate.list")["items"]
    assert (listed["next_schedule"], listed["next_tick"]) == (shown["next_schedule"],
                                                              shown["next_tick"])
