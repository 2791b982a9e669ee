"""Run a real systemd-journald in a private mount namespace, then a scenario against it.

Usage (as root): ``unshare --mount python -m tests.support.journal_ns SCENARIO.json``

Inside the namespace /run/systemd, /run/log and /var/log/journal are fresh tmpfs mounts,
so the machine's own journal and /run are untouched. The scenario starts the real
multiflexid logging to this journald, runs one job through the socket (and waits for the
action runs it names: ``{"action_runs": {"<runtemplate id>": count}}``), and then prints
what ``journalctl -o json MULTIFLEXI_JOB_ID=<id>`` finds — and each of its ``queries``
(``{"name": ["FIELD=value", ...]}``; ``{job}`` is the job's id) — as one JSON document;
or (with ``failing_call``) calls a method that fails inside the daemon and prints what
the client was told and what ``journalctl MULTIFLEXI_ERROR_ID=<the id it was told>`` finds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from multiflexi.errors import MultiFlexiError
from tests.support.daemon import DaemonProcess, program

JOURNALD = "/lib/systemd/systemd-journald"


def _mount_private() -> None:
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    for target in ("/run/systemd", "/run/log", "/var/log/journal"):
        os.makedirs(target, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", target], check=True)


def _wait_runs(d: DaemonProcess, rt_id: int, count: int, timeout: float = 30) -> list[dict]:
    """The template's action runs once ``count`` of them are done (succeeded, failed...)."""
    end = time.monotonic() + timeout
    runs: list[dict] = []
    while time.monotonic() < end:
        runs = d.call("action_run.list", runtemplate_id=rt_id)["items"]
        if len(runs) >= count and all(r["state"] not in ("pending", "running") for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"action runs of run template {rt_id}: {runs}\n{d.log()}")


def main() -> int:
    scenario = json.loads(Path(sys.argv[1]).read_text())
    _mount_private()
    journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        sock = Path("/run/systemd/journal/socket")
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.1)
        else:
            print(json.dumps({"error": "journald did not create its socket"}))
            return 1
        workdir = Path(scenario["workdir"])
        d = DaemonProcess(scenario["env"], workdir,
                          extra_env={"MULTIFLEXI_LOG_TARGET": "journal"}).start()
        if "failing_call" in scenario:
            return _internal_error(d, scenario["failing_call"])
        live: list[dict] = []
        try:
            with d.client() as watcher:
                job = d.call("runtemplate.run", id=scenario["runtemplate_id"],
                             env=scenario.get("env_overrides", {}),
                             secret_keys=scenario.get("secret_keys", []))
                if scenario.get("watch"):  # what a TUI following the job is sent
                    watcher.call("events.subscribe", job_output=job["id"])
                job = d.wait_job(job["id"], timeout=scenario.get("timeout", 30))
                if scenario.get("watch"):
                    for kind, payload in watcher.notifications(timeout=1.0):
                        if kind == "job.output":
                            live.append(payload)
                output = d.output(job["id"])
                runs = {rt: _wait_runs(d, int(rt), count)
                        for rt, count in scenario.get("action_runs", {}).items()}
        finally:
            d.stop()
        cli_output = subprocess.run(  # what `multiflexi-cli job output` prints
            [program("multiflexi-cli"), "job", "output", "--id", str(job["id"])],
            env={**os.environ, **scenario["env"]}, capture_output=True, text=True,
            check=False).stdout
        entries = _journal(f"MULTIFLEXI_JOB_ID={job['id']}")
        queries = {name: _journal(*(m.replace("{job}", str(job["id"])) for m in matches))
                   for name, matches in scenario.get("queries", {}).items()}
        print(json.dumps({"job": job, "entries": entries, "live": live,
                          "output": output, "cli_output": cli_output,
                          "action_runs": runs, "queries": queries,
                          "daemon_log": d.log()}))
        return 0
    finally:
        journald.terminate()
        journald.wait(10)


def _journal(*matches: str) -> list[dict]:
    """What ``journalctl -o json MATCH...`` finds."""
    subprocess.run(["journalctl", "--sync"], check=False)
    proc = subprocess.run(["journalctl", "--no-pager", "--all", "-o", "json", *matches],
                          capture_output=True, text=True, check=False)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _internal_error(d: DaemonProcess, call: dict) -> int:
    """Call a method that fails inside the daemon, twice; what the client was told and
    what the journal holds under the error id it was given."""
    replies = []
    try:
        for _ in range(2):
            try:
                d.call(call["method"], **call.get("params", {}))
                replies.append({"ok": True})
            except MultiFlexiError as exc:
                replies.append({"name": exc.name, "message": exc.message, "data": exc.data})
    finally:
        d.stop()
    eid = (replies[0].get("data") or {}).get("error_id")
    print(json.dumps({"replies": replies,
                      "entries": _journal(f"MULTIFLEXI_ERROR_ID={eid}") if eid else [],
                      "daemon_log": d.log()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
