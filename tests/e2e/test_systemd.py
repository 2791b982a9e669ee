"""The package in a booted Debian 12, as admins run it: systemd as PID 1 (systemd-nspawn).

A fresh copy of a cached minimal bookworm tree (tests/support/nspawn.py) is booted, and
the .deb built from this checkout is installed with `apt-get install ./multiflexi_*.deb`.
Then, in that system: the service is active and says its status; an admin in group
multiflexi runs a job with the CLI and reads its story with journalctl; a daemon frozen
with SIGSTOP is killed by the watchdog and restarted; `systemctl stop`, `restart` and a
reboot with jobs running; a Podman job with the README's socket setup; the TUI over SSH
from tmux. A second container upgrades version N to N+1 (built from a copy of this tree
with a bumped version and one more migration), then removes and purges the package.

Root only (marked ``root_only``; `make test` leaves these out for other users and says
so). Figures (tree build, boots, installs, each test) go to the e2e timings at the end.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.booted import (
    ADMIN,
    APPS_DIR,
    BOXED_UUID,
    COMPANY,
    FINAL,
    cli,
    installed_machine,
    job,
    jobs_of,
    journal,
    messages,
    run_now,
    running_jobs,
    template,
    timed,
    unit,
    wait_active,
    wait_job,
    wait_until,
)
from tests.support.nspawn import Machine
from tests.support.podman import CONTAINERS_CONF, image_import_args, rootfs_tar
from tests.support.tmux import Tmux

__all__ = ["timed"]  # the autouse fixture that times each test

pytestmark = [pytest.mark.e2e, pytest.mark.root_only]

# --- the booted machine, with the package installed ---------------------------------------


@pytest.fixture(scope="module")
def machine(booted_tree: Path, debs: list[Path], machine_lock: None,
            tmp_path_factory: pytest.TempPathFactory,
            timings: dict[str, float]) -> Iterator[Machine]:
    """Booted, the package installed, an admin, the test apps and a company."""
    with installed_machine(booted_tree, debs[0], tmp_path_factory.mktemp("booted"),
                           f"mf-e2e-{uuid.uuid4().hex[:6]}", timings,
                           "install in the booted system (apt-get install ./*.deb)") as m:
        cli(m, "application", "import-json", "--file", APPS_DIR)
        cli(m, "company", "create", "--name", "Acme s.r.o.", "--slug", COMPANY)
        yield m


# --- helpers ----------------------------------------------------------------------------------


def unit_processes(m: Machine) -> list[str]:
    """What runs in multiflexid.service's cgroup (cgroup v2 inside the container)."""
    pids = m.sh("cat /sys/fs/cgroup/system.slice/multiflexid.service/cgroup.procs "
                "2>/dev/null || true").stdout.split()
    shown = [m.run(["ps", "-o", "pid=,user=,args=", "-p", pid], check=False).stdout.strip()
             for pid in pids]
    return [line for line in shown if line]  # (not those that ended meanwhile)


def grace_seconds(m: Machine) -> float:
    """stop_grace_seconds as the installed configuration shows its default."""
    conf = m.path("/etc/multiflexi/multiflexi.conf").read_text()
    found = re.search(r"^#? ?stop_grace_seconds = (\d+)", conf, re.M)
    assert found, conf
    return float(found.group(1))


def unit_seconds(m: Machine, prop: str) -> float:
    """A time property of the unit (WatchdogUSec, TimeoutStopUSec, ...) in seconds."""
    value = unit(m, prop)[prop]
    total = 0.0
    for amount, suffix in re.findall(r"([\d.]+)(min|ms|s|us)?", value):
        total += float(amount) * {"min": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "": 1}[suffix]
    return total


MOVE_NEXT_RUNS_BACK = textwrap.dedent("""
    import sqlite3, sys
    from datetime import datetime, timedelta
    db = sqlite3.connect("/var/lib/multiflexi/multiflexi.db")
    days = int(sys.argv[1])
    for rt in sys.argv[2:]:
        (value,) = db.execute("SELECT next_schedule FROM runtemplate WHERE id = ?",
                              (int(rt),)).fetchone()
        moved = datetime.fromisoformat(value) - timedelta(days=days)
        db.execute("UPDATE runtemplate SET next_schedule = ? WHERE id = ?",
                   (moved.strftime("%Y-%m-%d %H:%M:%S.%f"), int(rt)))
    db.commit()
""")


def move_next_runs_back(m: Machine, rts: list[int], days: int) -> None:
    """As if the daemon had been down for ``days``: the templates' next run (stored in
    the database) lies that far in the past. The clock is this machine's own and cannot
    be moved, so the database is changed instead, while the daemon is not running (or
    the machine is off), by the service user with Debian's python and its sqlite3."""
    argv = ["python3", "-c", MOVE_NEXT_RUNS_BACK, str(days), *map(str, rts)]
    if not m.running:
        m.run_offline(argv, user="multiflexi")
        return
    assert unit(m, "ActiveState")["ActiveState"] in ("inactive", "failed")
    m.run(["runuser", "-u", "multiflexi", "--", *argv])


# --- the service ------------------------------------------------------------------------------


def test_the_service_is_active_after_install_and_says_its_status(machine: Machine) -> None:
    m = machine
    assert m.run(["systemctl", "is-enabled", "multiflexid"]).stdout.strip() == "enabled"
    # Type=notify: "active" only once the daemon sent READY=1
    assert m.run(["systemctl", "is-active", "multiflexid"]).stdout.strip() == "active"
    props = unit(m, "Type", "StatusText", "MainPID", "User", "NRestarts")
    assert props["Type"] == "notify" and props["User"] == "multiflexi"
    assert re.fullmatch(r"\d+ running, \d+ queued", props["StatusText"]), props
    status = m.run(["systemctl", "status", "--no-pager", "multiflexid"]).stdout
    print(status)
    assert re.search(r'Status: "\d+ running, \d+ queued"', status), status
    assert "Active: active (running)" in status
    # Docs: what they name is there
    docs = [d.strip('"') for d in unit(m, "Documentation")["Documentation"].split()]
    assert docs == ["man:multiflexid(8)", "file:/usr/share/doc/multiflexi/README.md"], docs
    assert m.path("/usr/share/man/man8/multiflexid.8.gz").exists()
    assert m.path("/usr/share/doc/multiflexi/README.md").exists()
    owner = m.sh(f"stat -c %U /proc/{props['MainPID']}").stdout.strip()
    assert owner == "multiflexi"
    ready = [msg for msg in messages(journal(m, "-u", "multiflexid")) if " ready on node " in msg]
    assert ready and ready[-1].startswith("multiflexid ")
    # The admin reaches the daemon over its socket without being root.
    status = cli(m, "status", user=ADMIN).stdout
    assert re.search(r"daemon\s+running: pid \d+ on node ", status), status
    assert m.sh("stat -c '%a %U %G' /run/multiflexi/multiflexid.sock").stdout.split() == [
        "660", "multiflexi", "multiflexi"]


def test_a_job_run_by_an_admin_tells_its_whole_story_in_the_journal(machine: Machine) -> None:
    m = machine
    marker = uuid.uuid4().hex[:8]
    rt = template(m, "story", f"echo out-{marker}; sleep 0.3; echo err-{marker} >&2; "
                              f"sleep 0.3; echo last-{marker}; exit 3")
    run = cli(m, "runtemplate", "run", "--id", str(rt), "--wait", user=ADMIN, check=False)
    # --wait follows the output and exits with the job's exit code
    assert run.returncode == 3, run
    assert [f"out-{marker}", f"last-{marker}"] == [
        line for line in run.stdout.splitlines() if marker in line]
    assert f"err-{marker}" in run.stderr
    found = re.search(r"job (\d+) of run template", run.stdout + run.stderr)
    assert found, run
    job_id = int(found.group(1))
    done = job(m, job_id)
    assert (done["state"], done["exitcode"], done["launched_by"]) == ("failed", 3, ADMIN)

    # journalctl MULTIFLEXI_JOB_ID=N: queued by whom, what ran, every line, how it ended
    def story() -> list[dict[str, Any]]:
        entries = journal(m, f"MULTIFLEXI_JOB_ID={job_id}")
        return entries if any("job ended" in e.get("MESSAGE", "") for e in entries) else []

    entries = wait_until(story, "the job's end in the journal", timeout=20)
    # who ran it, as an audit entry (MULTIFLEXI_AUDIT=1), then the job's own story
    audit = [e for e in entries if e.get("MULTIFLEXI_AUDIT") == "1"]
    assert [e["MULTIFLEXI_AUDIT_USER"] for e in audit] == [ADMIN], messages(entries)
    entries = [e for e in entries if e not in audit]
    said = messages(entries)
    print("\n".join(said))
    assert said[0] == f"job queued by {ADMIN} (adhoc-cli)", said
    assert said[1].startswith("job started: sh -c ") and f"out-{marker}" in said[1], said
    assert [s for s in said if s.startswith(("out-", "err-", "last-"))] == [
        f"out-{marker}", f"err-{marker}", f"last-{marker}"]
    assert said[-1] == "job ended: failed, exit code 3", said
    by_line = {str(e["MESSAGE"]): e for e in entries}
    assert by_line[f"err-{marker}"]["PRIORITY"] == "4"  # stderr is a warning
    assert by_line[f"out-{marker}"]["MULTIFLEXI_STREAM"] == "stdout"
    for e in entries:
        assert e["_SYSTEMD_UNIT"] == "multiflexid.service"
        assert (e["MULTIFLEXI_COMPANY"], e["MULTIFLEXI_RUNTEMPLATE_ID"]) == (COMPANY, str(rt))
    # ... and the service's own journal has the same lines among the daemon's.
    unit_log = messages(journal(m, "-u", "multiflexid"))
    assert all(s in unit_log for s in said)


def test_a_frozen_daemon_is_killed_by_the_watchdog_and_restarted(machine: Machine) -> None:
    m = machine
    watchdog, restart_sec = unit_seconds(m, "WatchdogUSec"), unit_seconds(m, "RestartUSec")
    assert watchdog > 0
    rt = template(m, "ticking", "echo working; exec sleep 900")
    try:
        first = run_now(m, rt)
        wait_job(m, first, ("running",))
        # every minute from now on (not before: a tick's job could start first, and the
        # job run by hand would wait for it, a template never running twice at once)
        cli(m, "runtemplate", "update", "--id", str(rt), "--interv", "i")
        # Frozen from a minute's 20th second on, the daemon is back (after 25-35 s) at
        # most 15 s before the next tick, or after it and then runs it at once.
        while time.time() % 60 < 20:
            time.sleep(0.5)
        before = unit(m, "MainPID", "NRestarts")
        frozen_at = time.time()
        m.run(["kill", "-STOP", before["MainPID"]])
        after = wait_until(
            lambda: (u := unit(m, "MainPID", "ActiveState", "NRestarts"))["ActiveState"]
            == "active" and u["MainPID"] not in ("0", before["MainPID"]) and u,
            "systemd to restart the frozen daemon", timeout=watchdog + restart_sec + 30,
            every=0.5)
        back_after = time.time() - frozen_at
        print(f"frozen daemon back after {back_after:.1f} s (WatchdogSec={watchdog:g}s, "
              f"RestartSec={restart_sec:g}s)")
        assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
        entries = journal(m, "-u", "multiflexid", f"--since=@{int(frozen_at)}")
        timeout_at = [int(e["__REALTIME_TIMESTAMP"]) / 1e6 for e in entries
                      if "Watchdog timeout" in e.get("MESSAGE", "")]
        assert timeout_at, messages(entries)
        assert timeout_at[0] - frozen_at <= watchdog + 2, "killed later than WatchdogSec"
        assert back_after <= watchdog + restart_sec + 15

        lost = job(m, first)
        assert lost["state"] == "lost"
        assert "stopped while the job ran" in (lost["reason"] or ""), lost
        # its process went with the daemon (systemd killed what was left in the cgroup)
        assert isinstance(lost["pid"], int)
        assert m.run(["kill", "-0", str(lost["pid"])], check=False).returncode != 0
        # the next tick runs
        tick = wait_until(lambda: [j for j in jobs_of(m, rt)
                                   if j["id"] != first and j["state"] == "running"],
                          "the next minutely tick to run", timeout=75, every=1)
        assert tick[0]["schedule_type"] in ("minutely", "catch-up"), tick
    finally:
        cli(m, "runtemplate", "update", "--id", str(rt), "--interv", "n", check=False)
        for j in jobs_of(m, rt):
            if j["state"] in ("pending", "scheduled", "running"):
                cli(m, "job", "cancel", "--id", str(j["id"]), check=False)
    wait_until(lambda: not [p for p in unit_processes(m) if "sleep 900" in p],
               "the ticking jobs to stop", timeout=30)


def test_stop_gives_running_jobs_their_grace_then_stops_them(machine: Machine) -> None:
    m = machine
    grace, stop_timeout = grace_seconds(m), unit_seconds(m, "TimeoutStopUSec")
    # "quick" needs 3 s more once the stop has begun; "slow" would need 10 minutes
    flag = "/var/lib/multiflexi/e2e-stop-begun"
    quick = template(m, "finishes-in-grace", f"echo started; until [ -e {flag} ]; do "
                                             "sleep 0.2; done; sleep 3; echo finished")
    slow = template(m, "outlives-grace", "echo started; exec sleep 900")
    jobs = {run_now(m, quick): "quick", run_now(m, slow): "slow"}
    for job_id in jobs:
        wait_job(m, job_id, ("running",))
    stopping_at = time.time()
    started = time.monotonic()
    m.write(flag, "")
    m.run(["systemctl", "stop", "multiflexid"], timeout=stop_timeout + 30)
    m.path(flag).unlink()
    took = time.monotonic() - started
    print(f"systemctl stop with 2 jobs running took {took:.1f} s (stop_grace_seconds="
          f"{grace:g}, TimeoutStopSec={stop_timeout:g})")
    assert grace - 1 <= took < stop_timeout, took
    props = unit(m, "ActiveState", "Result")
    assert props == {"ActiveState": "inactive", "Result": "success"}, props
    assert unit_processes(m) == []
    assert m.run(["pgrep", "-u", "multiflexi"], check=False).stdout.strip() == ""
    said = messages(journal(m, "-u", "multiflexid", f"--since=@{int(stopping_at)}"))
    print("\n".join(said))
    # the daemon stopped its jobs itself; systemd had nothing left to kill
    assert not [s for s in said if "Killing process" in s or "timed out" in s], said

    m.run(["systemctl", "start", "multiflexid"])
    wait_active(m)
    by_name = {name: job(m, job_id) for job_id, name in jobs.items()}
    assert (by_name["quick"]["state"], by_name["quick"]["exitcode"]) == ("succeeded", 0)
    assert "finished" in cli(m, "job", "output", "--id", str(by_name["quick"]["id"])).stdout
    assert by_name["slow"]["state"] == "cancelled", by_name["slow"]
    assert by_name["slow"]["reason"], by_name["slow"]
    assert running_jobs(m) == []


def test_restart_and_reboot_run_each_missed_tick_once_and_leave_nothing_running(
        machine: Machine, timings: dict[str, float]) -> None:
    m = machine
    long_job = template(m, "long", "echo started; exec sleep 900")
    before_restart = (template(m, "daily-1", "echo daily", interv="d"),
                      template(m, "weekly-1", "echo weekly", interv="w"))
    before_reboot = (template(m, "daily-2", "echo daily", interv="d"),
                     template(m, "weekly-2", "echo weekly", interv="w"))

    def scheduled(rts: tuple[int, ...]) -> dict[int, list[dict[str, Any]]]:
        return {rt: [j for j in jobs_of(m, rt) if j["schedule_type"] != "adhoc-cli"]
                for rt in rts}

    def caught_up(rts: tuple[int, ...]) -> dict[int, list[dict[str, Any]]]:
        return dict(wait_until(lambda: (c := scheduled(rts)) and all(
            len(js) == 1 and js[0]["state"] in FINAL for js in c.values()) and c,
            "one catch-up job per template", timeout=30))

    # the daemon down across ticks, then started again
    m.run(["systemctl", "stop", "multiflexid"], timeout=90)
    move_next_runs_back(m, list(before_restart), days=21)
    m.run(["systemctl", "restart", "multiflexid"], timeout=90)
    wait_active(m)
    for jobs in caught_up(before_restart).values():
        assert (jobs[0]["state"], jobs[0]["schedule_type"]) == ("succeeded", "catch-up")
    # systemctl restart while a job runs: it is stopped, and nothing runs twice
    running = run_now(m, long_job)
    wait_job(m, running, ("running",))
    m.run(["systemctl", "restart", "multiflexid"], timeout=90)
    wait_active(m)
    assert job(m, running)["state"] == "cancelled"
    time.sleep(2)
    assert {rt: len(js) for rt, js in scheduled(before_restart).items()} == dict.fromkeys(
        before_restart, 1)
    assert running_jobs(m) == []

    # a reboot while a job runs, the machine off for days
    running = run_now(m, long_job)
    wait_job(m, running, ("running",))
    timings["poweroff with a job running"] = m.poweroff()
    move_next_runs_back(m, list(before_reboot), days=10)
    started = time.monotonic()
    m.boot()
    wait_active(m)
    timings["boot again until multiflexid is active"] = time.monotonic() - started
    for jobs in caught_up(before_reboot).values():
        assert (jobs[0]["state"], jobs[0]["schedule_type"]) == ("succeeded", "catch-up")
    assert {rt: len(js) for rt, js in scheduled(before_restart).items()} == dict.fromkeys(
        before_restart, 1)
    stopped = job(m, running)
    assert stopped["state"] == "cancelled", stopped
    assert running_jobs(m) == []
    # the daemon stopped its job itself on the way down, and then itself
    previous_boot = messages(journal(m, "--boot=-1", "-u", "multiflexid"))
    assert "multiflexid stopped" in previous_boot, previous_boot[-8:]
    assert any(s.startswith("job ended: cancelled") for s in messages(
        journal(m, "--boot=-1", f"MULTIFLEXI_JOB_ID={running}")))


# --- Podman -----------------------------------------------------------------------------------


PODMAN_SETUP = """\
addgroup --system podman-api
adduser multiflexi podman-api
mkdir -p /etc/systemd/system/podman.socket.d
printf '[Socket]\\nSocketGroup=podman-api\\n' > /etc/systemd/system/podman.socket.d/multiflexi.conf
echo 'D! /run/podman 0750 root podman-api' > /etc/tmpfiles.d/multiflexi-podman.conf
systemd-tmpfiles --create --boot /etc/tmpfiles.d/multiflexi-podman.conf
systemctl daemon-reload
systemctl stop podman.service
systemctl restart podman.socket
systemctl restart multiflexid
"""


def test_a_podman_job_works_with_the_readmes_podman_setup(machine: Machine) -> None:
    m = machine
    # This machine's Podman needs runc and ulimits it may set (shared/PLATFORM.md), and no
    # pids limit: the container's cgroup v2 has no pids controller on a v1/v2 hybrid host.
    m.write("/etc/containers/containers.conf",
            CONTAINERS_CONF.replace("[containers]\n", "[containers]\npids_limit = 0\n"))
    m.run(["podman", *image_import_args()], input=rootfs_tar(), timeout=120)
    marker = uuid.uuid4().hex[:8]
    rt = template(m, "boxed", f'echo "in a box {marker}"; echo written > out.txt; exit 4',
                  app=BOXED_UUID, executor="Podman")

    def run_boxed() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        run = cli(m, "runtemplate", "run", "--id", str(rt), "--wait", user=ADMIN, check=False)
        found = re.search(r"job (\d+) of run template", run.stdout + run.stderr)
        assert found, run
        return run, job(m, int(found.group(1)))

    # Out of the box user multiflexi may not use root's Podman socket: the job says so.
    _, refused = run_boxed()
    print("before the README's setup:", refused["state"], refused["reason"])
    assert refused["state"] == "failed"
    assert "Permission denied (user multiflexi may not use /run/podman/podman.sock: see " \
           '"Podman jobs" in /usr/share/doc/multiflexi/README.md)' in refused["reason"]
    assert m.path("/usr/share/doc/multiflexi/README.md").exists()

    # The README's steps, as they are written there.
    readme = m.path("/usr/share/doc/multiflexi/README.md").read_text()
    for line in PODMAN_SETUP.splitlines():
        assert line in readme, f"the README does not say: {line}"
    m.sh(PODMAN_SETUP)
    wait_active(m)

    for when in ("after the setup", "after a reboot"):
        if when == "after a reboot":
            m.poweroff()
            m.boot()
            wait_active(m)
        assert m.sh("stat -c '%a %G' /run/podman /run/podman/podman.sock").stdout.split() == [
            "750", "podman-api", "660", "podman-api"], when
        run, done = run_boxed()
        assert run.returncode == 4, (when, run)
        assert f"in a box {marker}" in run.stdout
        assert (done["state"], done["exitcode"], done["executor"]) == ("failed", 4, "Podman")
        artifacts = cli(m, "artifact", "list", "--job", str(done["id"])).stdout
        assert "out.txt" in artifacts, artifacts
        # the job's container is gone; the journal has its output under the job's id
        left = m.run(["podman", "ps", "-a", "--format", "{{.Names}}"]).stdout.split()
        assert not [c for c in left if c.endswith(f"-{done['id']}")], left
        assert f"in a box {marker}" in messages(journal(m, f"MULTIFLEXI_JOB_ID={done['id']}"))


# --- the TUI over SSH -------------------------------------------------------------------------


class Ssh:
    """The admin's ssh client, run on this machine in the container's network."""

    def __init__(self, machine: Machine, key: Path, known_hosts: Path) -> None:
        self.machine, self.key, self.known_hosts = machine, key, known_hosts

    def argv(self, user: str, remote: str) -> list[str]:
        return self.machine.in_netns([
            "ssh", "-F", "/dev/null", "-t", "-i", str(self.key), "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            f"{user}@127.0.0.1", remote])


@pytest.fixture(scope="module")
def sshd(machine: Machine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ssh]:
    """openssh-server in the container (port 22 of its own network), the admin's key
    authorized and the host key known; stopped at the end."""
    m = machine
    m.write("/etc/ssh/sshd_config.d/multiflexi-e2e.conf",
            "PasswordAuthentication no\nPrintMotd no\nPrintLastLog no\n")
    keys = tmp_path_factory.mktemp("ssh")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "id")],
                   check=True, timeout=30)
    m.write(f"/home/{ADMIN}/.ssh/authorized_keys", (keys / "id.pub").read_text(), mode=0o600)
    m.sh(f"chown -R {ADMIN}: /home/{ADMIN}/.ssh && chmod 700 /home/{ADMIN}/.ssh")
    host_key = m.path("/etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
    (keys / "known_hosts").write_text(f"127.0.0.1 {' '.join(host_key)}\n")
    ssh = Ssh(m, keys / "id", keys / "known_hosts")
    m.run(["systemctl", "start", "ssh.service"])
    try:
        login = [a for a in ssh.argv(ADMIN, "id -nG") if a != "-t"]
        groups = subprocess.run(login, capture_output=True, text=True, timeout=30, check=False)
        assert groups.returncode == 0, groups
        assert "multiflexi" in groups.stdout.split(), groups.stdout
        yield ssh
    finally:
        if m.running:
            m.run(["systemctl", "stop", "ssh.service"], check=False)


@pytest.fixture(scope="module")
def live_template(machine: Machine) -> tuple[int, str]:
    marker = uuid.uuid4().hex[:8]
    rt = template(machine, f"tui-live-{marker}",
                  f"echo first-{marker}; sleep 3; echo second-{marker}")
    return rt, marker


@pytest.mark.parametrize("term", ["xterm-256color", "screen"])
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_the_tui_over_ssh(machine: Machine, sshd: Ssh, live_template: tuple[int, str],
                          size: tuple[int, int], term: str) -> None:
    rt, marker = live_template
    name = f"tui-live-{marker}"
    tmux = Tmux(uuid.uuid4().hex[:8], term=term)
    try:
        tmux.start(shlex.join(sshd.argv(ADMIN, "multiflexi-tui --view templates")), *size,
                   then="exec sh -i")
        tmux.wait_for(lambda t: "● MultiFlexi" in t and name in t, "the templates view")
        assert m_term(machine) == term
        # (each key once the screen shows the last one's effect, as a person types)
        tmux.keys("/")
        tmux.wait_text("filter: words to find")
        tmux.keys(name, literal=True)
        tmux.wait_for(lambda t: t.count(name) == 2, "the name in the filter and its row")
        tmux.keys("Enter")
        tmux.wait_text(f"filter: {name}")
        tmux.keys("r")
        tmux.wait_text(f"Run template #{rt} {name}")
        tmux.keys("Enter")
        # live: the first line is on screen while the job still runs
        screen = tmux.wait_for(lambda t: f"first-{marker}" in t, "the first output line")
        assert f"second-{marker}" not in screen, screen
        screen = tmux.wait_for(lambda t: f"second-{marker}" in t and "succeeded" in t,
                               "the job's last line and its end", timeout=30)
        print(f"{size[0]}x{size[1]} TERM={term}:\n{screen}")
        tmux.keys("Escape")
        time.sleep(0.5)  # a key right after Escape would read as Alt+key
        tmux.keys("q")
        screen = tmux.wait_for(lambda t: "EXITED=" in t, "the TUI to quit")
        assert "EXITED=0" in screen and "Traceback" not in screen, screen
        # a clean terminal: main screen, cursor shown, no mouse or keypad modes left on
        flags = tmux.show("#{alternate_on} #{cursor_flag} #{mouse_any_flag} "
                          "#{mouse_button_flag} #{mouse_sgr_flag} #{keypad_cursor_flag}")
        assert flags == "0 1 0 0 0 0", flags
        tmux.keys(f"echo typed-{marker}", literal=True)
        tmux.keys("Enter")
        screen = tmux.wait_for(
            lambda t: f"typed-{marker}" in [line.strip() for line in t.splitlines()],
            "the shell to answer")
    finally:
        tmux.kill()


def m_term(machine: Machine) -> str:
    """TERM of the admin's running TUI, as ssh passed it on."""
    pid = machine.run(["pgrep", "-u", ADMIN, "-n", "-f", "multiflexi-tui"]).stdout.split()[0]
    env = machine.run(["cat", f"/proc/{pid}/environ"]).stdout.split("\0")
    return next(v.split("=", 1)[1] for v in env if v.startswith("TERM="))
