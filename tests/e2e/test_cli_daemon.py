"""multiflexi-cli with the daemon: run --wait, job output --follow, job cancel, status.

The real console script runs as a subprocess (its exit code and its two streams are what
a script would see) against the real daemon, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, program, running_daemon
from tests.support.factory import make_template


def cli(env: Env, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([program("multiflexi-cli"), *args], env={**os.environ, **env.vars()},
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def daemon(mf_env: Env, core: Core, tmp_path: Path) -> Iterator[DaemonProcess]:
    core.ensure_schema()
    with running_daemon(mf_env.vars(), tmp_path) as d:
        yield d


def test_run_wait_prints_live_output_and_exits_with_the_jobs_code(
    mf_env: Env, core: Core, daemon: DaemonProcess
) -> None:
    rt = make_template(core, config={"SCRIPT": "echo to-out; echo to-err >&2; exit 7"})
    r = cli(mf_env, "runtemplate", "run", "--id", str(rt), "--wait")
    assert r.returncode == 7, r.stderr
    assert r.stdout == "to-out\n"  # stdout is the job's stdout, nothing else
    assert "to-err" in r.stderr
    assert "failed, exit code 7" in r.stderr
    r = cli(mf_env, "run-template:run", "--id", str(rt), "--wait", "--env", "SCRIPT=true")
    assert r.returncode == 0, r.stderr
    r = cli(mf_env, "--format", "json", "runtemplate", "run", "--id", str(rt), "--wait",
            "--env", "SCRIPT=echo x; exit 2")
    assert r.returncode == 2
    doc = json.loads(r.stdout)
    assert (doc["state"], doc["exitcode"]) == ("failed", 2)


def test_run_wait_on_timeout_and_blocked(mf_env: Env, core: Core,
                                         daemon: DaemonProcess) -> None:
    rt = make_template(core, name="slow", timeout=1, config={"SCRIPT": "sleep 30"})
    r = cli(mf_env, "runtemplate", "run", "--id", str(rt), "--wait")
    assert r.returncode == 124, r.stderr
    assert "timed_out" in r.stderr


def test_the_last_lines_of_a_long_output(mf_env: Env, core: Core,
                                         daemon: DaemonProcess) -> None:
    """``job output --tail N``: the last N lines as tail counts them, stderr on stderr;
    with --follow the same, then the job's exit code (tests/unit/test_output_tail.py: how
    few pages are read)."""
    rt = make_template(core, name="long", config={
        "SCRIPT": "seq 1 20000; echo warned >&2; sleep 0.3; printf 'last, no newline'; "
                  "exit 3"})
    job = json.loads(cli(mf_env, "--format", "json", "runtemplate", "run", "--id",
                         str(rt)).stdout)
    assert daemon.wait_job(job["id"])["exitcode"] == 3
    r = cli(mf_env, "job", "output", "--id", str(job["id"]), "--tail", "3")
    assert (r.returncode, r.stdout, r.stderr) == (0, "20000\nlast, no newline", "warned\n")
    r = cli(mf_env, "job", "output", "--id", str(job["id"]), "-n", "3", "--stream", "stdout")
    assert (r.stdout, r.stderr) == ("19999\n20000\nlast, no newline", "")
    r = cli(mf_env, "--format", "json", "job", "output", "--id", str(job["id"]), "--tail", "2")
    assert [c["data"] for c in json.loads(r.stdout)] == ["warned\n", "last, no newline"]
    r = cli(mf_env, "job", "output", "--id", str(job["id"]), "--tail", "2", "--follow")
    assert r.returncode == 3
    assert r.stdout == "last, no newline" and r.stderr.startswith("warned\n")
    assert "failed, exit code 3" in r.stderr
    whole = cli(mf_env, "job", "output", "--id", str(job["id"]), "--tail", "100000")
    assert whole.stdout == cli(mf_env, "job", "output", "--id", str(job["id"])).stdout
    r = cli(mf_env, "job", "output", "--id", str(job["id"]), "--tail", "0")
    assert r.returncode == 2 and "--tail" in r.stderr


def test_follow_a_running_job_from_its_last_line(mf_env: Env, core: Core,
                                                daemon: DaemonProcess, tmp_path: Path) -> None:
    go = tmp_path / "go"
    rt = make_template(core, name="slow", config={
        "SCRIPT": f"echo a; echo b; echo c; while [ ! -e {go} ]; do sleep 0.05; done; echo d"})
    job = json.loads(cli(mf_env, "--format", "json", "runtemplate", "run", "--id",
                         str(rt)).stdout)
    deadline = time.monotonic() + 20
    while "c" not in daemon.output(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    import os

    follower = subprocess.Popen(
        [program("multiflexi-cli"), "job", "output", "--id", str(job["id"]), "--follow",
         "--tail", "1"], env={**os.environ, **mf_env.vars()}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    assert follower.stdout is not None
    assert follower.stdout.readline() == "c\n"  # the last line so far, then what comes
    go.touch()
    out, err = follower.communicate(timeout=60)
    assert (follower.returncode, out) == (0, "d\n"), err
    assert "succeeded" in err


def test_follow_and_cancel_a_running_job(mf_env: Env, core: Core,
                                         daemon: DaemonProcess) -> None:
    rt = make_template(core, name="long", config={
        "SCRIPT": "echo first; sleep 1; echo second; sleep 60; echo never"})
    job = json.loads(cli(mf_env, "--format", "json", "runtemplate", "run", "--id",
                         str(rt)).stdout)
    import os

    follower = subprocess.Popen(
        [program("multiflexi-cli"), "job", "output", "--id", str(job["id"]), "--follow"],
        env={**os.environ, **mf_env.vars()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 20
    while "second" not in daemon.output(job["id"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    r = cli(mf_env, "job", "cancel", "--id", str(job["id"]))
    assert r.returncode == 0, r.stderr
    assert "stopping" in r.stdout
    out, err = follower.communicate(timeout=60)
    assert follower.returncode == 130
    assert out == "first\nsecond\n"
    assert "cancelled" in err
    r = cli(mf_env, "job", "cancel", "--id", str(job["id"]))
    assert r.returncode == 1 and "already cancelled" in r.stderr


def test_status_reports_the_running_daemon(mf_env: Env, daemon: DaemonProcess) -> None:
    r = cli(mf_env, "--format", "json", "status")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["daemon"]
    assert d["reachable"] is True and d["node"] == "test-node"
    assert d["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    text = cli(mf_env, "status").stdout
    assert f"running: pid {d['pid']} on node test-node" in text


def test_without_the_daemon(mf_env: Env, core: Core, tmp_path: Path) -> None:
    rt = make_template(core, name="later", config={"SCRIPT": "echo ran"})
    r = cli(mf_env, "runtemplate", "run", "--id", str(rt), "--wait")
    assert r.returncode == 1
    assert "--wait needs the daemon: multiflexid is not running" in r.stderr
    r = cli(mf_env, "job", "output", "--id", "1", "--follow")
    assert r.returncode == 1 and "needs the daemon" in r.stderr
    r = cli(mf_env, "--format", "json", "runtemplate", "run", "--id", str(rt))
    assert r.returncode == 0, r.stderr
    queued = json.loads(r.stdout)
    assert queued["state"] == "scheduled"
    r = cli(mf_env, "status")
    assert "not running (multiflexid is not running" in r.stdout
    with running_daemon(mf_env.vars(), tmp_path) as d:  # it runs once the daemon starts
        done = d.wait_job(queued["id"])
        assert done["state"] == "succeeded" and d.output(queued["id"]) == "ran\n"
    second = json.loads(cli(mf_env, "--format", "json", "runtemplate", "run", "--id",
                            str(rt)).stdout)
    r = cli(mf_env, "job", "cancel", "--id", str(second["id"]))  # queued: cancelled in the DB
    assert r.returncode == 0 and "cancelled before it ran" in r.stdout
