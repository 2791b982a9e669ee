"""The installed package in a booted container (tests/support/nspawn.py), the way an admin
uses it: installing the .deb with apt, the admin user, the CLI, jobs, the unit, the journal.

Shared by tests/e2e/test_systemd.py (the service) and tests/e2e/test_upgrade.py (N -> N+1,
remove, purge).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.factory import shell_app
from tests.support.nspawn import Machine, booted
from tests.support.podman import TEST_IMAGE

ADMIN = "alice"  # an admin in group multiflexi (README: adduser alice multiflexi)
COMPANY = "acme"
APPS_DIR = "/usr/local/share/multiflexi-e2e"  # world-readable, like packages' app files
SHELL_UUID = "0e2e0e2e-0000-4000-8000-000000000101"
BOXED_UUID = "0e2e0e2e-0000-4000-8000-000000000102"
FINAL = ("succeeded", "failed", "timed_out", "cancelled", "lost", "blocked")
PROBE_TYPE = ("/usr/lib/multiflexi/venv/lib/python3.11/site-packages/multiflexi/examples/"
              "credential-types/Probe.json")


def install_deb(machine: Machine, deb: Path, timings: dict[str, float], what: str) -> str:
    """`apt-get install ./<deb>` in the machine's /root, as an admin does; apt's output."""
    target = machine.path(f"/root/{deb.name}")
    target.write_bytes(deb.read_bytes())
    started = time.monotonic()
    result = machine.sh(f"cd /root && apt-get install -y -q ./{deb.name.split('_')[0]}_*.deb"
                        f" && rm ./{deb.name}", timeout=600)
    timings[what] = time.monotonic() - started
    return result.stdout + result.stderr


def add_admin(machine: Machine) -> None:
    machine.sh(f"adduser --quiet --disabled-password --gecos '' {ADMIN} && "
               f"adduser --quiet {ADMIN} multiflexi")


def write_test_apps(m: Machine) -> None:
    shell = shell_app("E2E Shell")
    shell["uuid"] = SHELL_UUID
    boxed = shell_app("E2E Boxed")
    boxed.update(uuid=BOXED_UUID, ociimage=TEST_IMAGE,
                 artifacts=[{"name": "out", "path": r"out\.txt", "type": "text"}])
    for name, doc in (("shell", shell), ("boxed", boxed)):
        m.write(f"{APPS_DIR}/{name}.app.json", json.dumps(doc))


@contextlib.contextmanager
def installed_machine(tarball: Path, deb: Path, workdir: Path, name: str,
                      timings: dict[str, float], what: str) -> Iterator[Machine]:
    """A fresh machine from ``tarball``, booted, ``deb`` installed with apt (its time in
    ``timings`` as ``what``), the admin and the test apps' files there; destroyed at the
    end whatever happened."""
    started = time.monotonic()
    with booted(tarball, workdir, name) as m:
        timings[f"unpack and boot a fresh tree ({name.split('-')[1]})"] = (
            time.monotonic() - started)
        install_deb(m, deb, timings, what)
        add_admin(m)
        write_test_apps(m)
        yield m


def cli(m: Machine, *args: str, user: str | None = None,
        check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return m.run(["multiflexi-cli", *args], user=user, check=check, timeout=timeout)


def cli_json(m: Machine, *args: str, user: str | None = None) -> Any:
    return json.loads(cli(m, "--format", "json", *args, user=user).stdout)


def template(m: Machine, name: str, script: str, *, interv: str = "n",
             app: str = SHELL_UUID, executor: str = "Native") -> int:
    rt = cli_json(m, "runtemplate", "create", "--app", app, "--company", COMPANY,
                  "--name", name, "--interv", interv, "--executor", executor,
                  "--config", f"SCRIPT={script}")
    return int(rt["id"])


def run_now(m: Machine, rt: int) -> int:
    return int(cli_json(m, "runtemplate", "run", "--id", str(rt))["id"])


def job(m: Machine, job_id: int) -> dict[str, Any]:
    return dict(cli_json(m, "job", "show", "--id", str(job_id)))


def jobs_of(m: Machine, rt: int) -> list[dict[str, Any]]:
    return list(cli_json(m, "job", "list", "--runtemplate", str(rt), "--limit", "100"))


def running_jobs(m: Machine) -> list[dict[str, Any]]:
    return list(cli_json(m, "job", "list", "--state", "running"))


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60,
               every: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def wait_job(m: Machine, job_id: int, states: tuple[str, ...] = FINAL,
             timeout: float = 60) -> dict[str, Any]:
    """Until the job is in one of ``states`` ("running": its process has a pid)."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(job(m, job_id))
        if last["state"] in states and (last["state"] != "running" or last["pid"]):
            return dict(last)
        return None

    try:
        return dict(wait_until(reached, f"job {job_id} to be {'/'.join(states)}", timeout))
    except AssertionError as exc:
        story = "\n".join(messages(journal(m, f"MULTIFLEXI_JOB_ID={job_id}")))
        raise AssertionError(f"{exc}; it is {last.get('state')} "
                             f"({last.get('reason')}); its journal:\n{story}") from None


def unit(m: Machine, *props: str, name: str = "multiflexid") -> dict[str, str]:
    out = m.run(["systemctl", "show", name, *[f"--property={p}" for p in props]]).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def wait_active(m: Machine, timeout: float = 60) -> dict[str, str]:
    return wait_until(lambda: (u := unit(m, "ActiveState", "SubState", "MainPID"))[
        "ActiveState"] == "active" and u, "multiflexid to be active", timeout)


def journal(m: Machine, *match: str) -> list[dict[str, Any]]:
    out = m.run(["journalctl", "--no-pager", "-o", "json", *match]).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def messages(entries: list[dict[str, Any]]) -> list[str]:
    return [str(e.get("MESSAGE", "")) for e in entries]


@pytest.fixture(autouse=True)
def timed(request: pytest.FixtureRequest, timings: dict[str, float]) -> Iterator[None]:
    """Each test's duration in the e2e timings (import it into the test module)."""
    started = time.monotonic()
    yield
    timings[f"{request.node.module.__name__.rsplit('.', 1)[-1]}: {request.node.name}"] = (
        time.monotonic() - started)
