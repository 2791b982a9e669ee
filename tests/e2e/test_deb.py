"""The Debian package for real: built from this checkout, installed, used, removed, purged.

As a new admin would: `apt-get install ./multiflexi_*.deb`, `multiflexi-cli --version`,
`status`, an upstream app imported as root (as upstream packages' postinsts do), the
daemon started by hand as user multiflexi (PID 1 is not systemd here), a job run through
the CLI and seen in the TUI, then `apt-get remove` and `purge`, after which nothing of
ours is left: no file, no user, no process.

Root only (marked ``root_only``; `make test` leaves these out for other users and says
so). The machine is left as it was found: whatever of ours was there before is set aside
and put back, and the package is purged at the end even when a test fails. Build,
lintian, install and purge times are printed at the end of the run.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
PKG = "multiflexi"
USER = "multiflexi"
VENV = Path("/usr/lib/multiflexi/venv")
CONF = Path("/etc/multiflexi/multiflexi.conf")
DATA = Path("/var/lib/multiflexi")
RUN = Path("/run/multiflexi")
UNIT = Path("/lib/systemd/system/multiflexid.service")
# Everything the package, its maintainer scripts or the daemon put on the machine.
OURS = [
    Path("/usr/lib/multiflexi"), CONF.parent, DATA, RUN, UNIT,
    Path("/usr/bin/multiflexid"), Path("/usr/bin/multiflexi-cli"), Path("/usr/bin/multiflexi-tui"),
    Path("/usr/share/doc/multiflexi"), Path("/usr/share/man/man8/multiflexid.8.gz"),
    Path("/usr/share/man/man1/multiflexi-cli.1.gz"),
    Path("/usr/share/man/man1/multiflexi-tui.1.gz"),
    Path("/etc/systemd/system/multi-user.target.wants/multiflexid.service"),
    Path("/var/lib/systemd/deb-systemd-helper-enabled/multiflexid.service.dsh-also"),
    Path("/var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/"
         "multiflexid.service"),
]
# Found on the machine before the test: set aside, put back afterwards.
SET_ASIDE = [CONF.parent, DATA, RUN]
# How an admin's root shell runs things: none of the developer's MULTIFLEXI_* settings.
ADMIN_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8", "HOME": "/root", "USER": "root", "LOGNAME": "root",
    "TERM": os.environ.get("TERM", "xterm-256color"),
}
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
ECHO_APP_UUID = "0e2e0e2e-0000-4000-8000-000000000001"
ECHO_APP = {
    "name": "E2E Echo", "description": "Greets (installed-package test)",
    "executable": "/bin/echo", "cmdparamsTemplate": "hello from {GREETING_TARGET}",
    "uuid": ECHO_APP_UUID, "version": "1.0", "schemaVersion": "3.4.0",
    "environment": {"GREETING_TARGET": {"type": "string", "description": "who",
                                        "defval": "multiflexi", "required": True}},
}


def run(cmd: list[str], *, check: bool = True, timeout: float = 120,
        **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("env", ADMIN_ENV)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                            check=False, **kwargs)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}\n"
                    f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return run(["/usr/bin/multiflexi-cli", *args], **kwargs)


def cli_json(*args: str, **kwargs: Any) -> Any:
    return json.loads(cli("--format", "json", *args, **kwargs).stdout)


def dpkg_status() -> str:
    """'installed', 'config-files', 'not-installed', ... ('unknown' if dpkg never saw it)."""
    r = run(["dpkg-query", "-W", "-f=${db:Status-Status}", PKG], check=False)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def user_exists(name: str = USER) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def our_processes(uid: int | None) -> list[str]:
    """Processes of user ``uid`` or running our programs: 'pid: command line'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(os.getpid()):
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            uids = next(line for line in (entry / "status").read_text().splitlines()
                        if line.startswith("Uid:")).split()[1:]
        except (OSError, StopIteration):
            continue
        if (uid is not None and str(uid) in uids) or re.search(
                r"/usr/lib/multiflexi/|/usr/bin/multiflexi", cmdline):
            found.append(f"{entry.name}: {cmdline}")
    return found


def left_over() -> list[str]:
    """What of ours is still on the machine."""
    leftovers = [str(p) for p in OURS if p.exists() or p.is_symlink()]
    if user_exists():
        leftovers.append(f"user {USER}")
    with contextlib.suppress(KeyError):
        grp.getgrnam(USER)
        leftovers.append(f"group {USER}")
    if dpkg_status() not in ("not-installed", "unknown"):
        leftovers.append(f"package {PKG} ({dpkg_status()})")
    return leftovers


def purge() -> subprocess.CompletedProcess[str]:
    return run([*APT, "purge", PKG], env={**ADMIN_ENV, "DEBIAN_FRONTEND": "noninteractive"},
               timeout=300, check=False)


# --- installing, and leaving the machine as it was --------------------------------------


@dataclass
class Installation:
    debs: list[Path]
    cleanups: list[Callable[[], None]] = field(default_factory=list)


def set_aside_what_was_there() -> list[tuple[Path, Path]]:
    status = dpkg_status()
    if status not in ("not-installed", "unknown"):
        print(f"{PKG} was {status} (an interrupted earlier run?): purging it first")
        purge()
    if user_exists():
        pytest.fail(f"user {USER} exists although package {PKG} is not installed; the test "
                    f"would delete it. Remove it (deluser --system {USER}) and run again.")
    moved = []
    for path in SET_ASIDE:
        if path.exists() or path.is_symlink():
            aside = path.with_name(f".{path.name}.e2e-set-aside-{os.getpid()}")
            path.rename(aside)
            moved.append((path, aside))
            print(f"set aside {path} (found before the test) as {aside}")
    return moved


def put_back(moved: list[tuple[Path, Path]]) -> None:
    for path, aside in moved:
        if path.exists():
            shutil.rmtree(path)  # ours: the original was set aside
        aside.rename(path)


@pytest.fixture(scope="module")
def installed(debs: list[Path], machine_lock: None,
              timings: dict[str, float]) -> Iterator[Installation]:
    """The package installed with apt; purged at the end whatever happened."""
    moved = set_aside_what_was_there()
    inst = Installation(debs)
    try:
        # An admin who tried multiflexi-cli as root before installing the package left a
        # root-owned data dir: the package must adopt it (the daemon writes there).
        DATA.mkdir(mode=0o750)
        (DATA / "left-by-root.txt").write_text("made by root before the package\n")
        started = time.monotonic()
        run([*APT, "install", "--no-install-recommends", *[str(p) for p in debs]],
            env={**ADMIN_ENV, "DEBIAN_FRONTEND": "noninteractive"}, timeout=600)
        timings["install (apt-get install ./*.deb)"] = time.monotonic() - started
        yield inst
    finally:
        for cleanup in reversed(inst.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        if dpkg_status() not in ("not-installed", "unknown"):
            purge()
        if user_exists() and not our_processes(pwd.getpwnam(USER).pw_uid):
            # The postrm keeps a user that still runs processes; it was not there before.
            run(["deluser", "--system", "--quiet", USER], check=False)
        with contextlib.suppress(KeyError):
            grp.getgrnam(USER)
            run(["delgroup", "--system", "--quiet", "--only-if-empty", USER], check=False)
        put_back(moved)


# --- the package itself ---------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.root_only
def test_lintian_reports_no_errors(debs: list[Path], timings: dict[str, float]) -> None:
    started = time.monotonic()
    result = run(["lintian", "--fail-on", "error", "--no-tag-display-limit",
                  *[str(p) for p in debs]], check=False, timeout=600)
    timings["lintian"] = time.monotonic() - started
    tags = [line for line in result.stdout.splitlines() if re.match(r"[EWI]: ", line)]
    print("lintian:\n" + "\n".join(tags or ["(nothing)"]))
    errors = [t for t in tags if t.startswith("E: ")]
    assert not errors and result.returncode == 0, "lintian errors:\n" + "\n".join(
        errors or [result.stdout, result.stderr])


@pytest.mark.e2e
@pytest.mark.root_only
def test_new_admin_finds_a_working_installation(installed: Installation) -> None:
    assert dpkg_status() == "installed"
    version = re.search(r'__version__ = "(.+)"',
                        (REPO / "shared/multiflexi/__init__.py").read_text())
    assert version
    assert cli("--version").stdout.strip() == f"multiflexi-cli, version {version.group(1)}"

    status = cli("status")
    assert f"config         {CONF}" in status.stdout
    assert "(up to date)" in status.stdout  # the postinst migrated the database
    assert "daemon         not running" in status.stdout  # PID 1 is not systemd: not started

    # The service user: a system user whose home is the data dir, and no login.
    entry = pwd.getpwnam(USER)
    assert entry.pw_uid < 1000 and entry.pw_dir == str(DATA)
    assert entry.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    assert grp.getgrgid(entry.pw_gid).gr_name == USER
    assert "multiflexi" in run(["id", USER]).stdout

    info = DATA.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (
        entry.pw_uid, entry.pw_gid, 0o750)
    assert (DATA / "left-by-root.txt").exists()
    assert not [p for p in DATA.rglob("*") if p.owner() != USER]  # adopted, all of it

    # The configuration: a conffile with every default shown, readable by the group only.
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", PKG]).stdout
    assert str(CONF) in conffiles
    info = CONF.stat()
    assert (info.st_uid, grp.getgrgid(info.st_gid).gr_name, stat.S_IMODE(info.st_mode)) == (
        0, USER, 0o640)
    assert "# database_url = " in CONF.read_text()

    # The programs: Debian's python 3.11 in a private venv that has everything it needs.
    for name in ("multiflexid", "multiflexi-cli", "multiflexi-tui"):
        assert os.path.realpath(f"/usr/bin/{name}") == str(VENV / "bin" / name)
    probe = run([str(VENV / "bin/python"), "-c", textwrap.dedent("""
        import os, sys, sqlalchemy, alembic, psycopg, croniter, jsonschema, click, rich
        import textual, podman, docker, cryptography.fernet, systemd.journal, systemd.daemon
        import multiflexi, multiflexid.cli.main
        print(os.path.realpath(sys.executable), sys.version_info[:2], sys.base_prefix)
        print(psycopg.pq.version(), sqlalchemy.__version__)
    """)])
    first = probe.stdout.splitlines()[0]
    assert first.startswith("/usr/bin/python3") and "(3, 11) /usr" in first, probe.stdout
    assert list(VENV.rglob("*.pyc")), "the postinst byte-compiled nothing"

    # The unit, linted where the real /usr/bin/multiflexid exists, unmodified.
    lint = run(["systemd-analyze", "verify", str(UNIT)], check=False)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint
    # Enabled for the next boot with systemd; nothing was started without it.
    assert Path("/etc/systemd/system/multi-user.target.wants/multiflexid.service").is_symlink()
    assert not our_processes(entry.pw_uid)
    for page in ("man8/multiflexid.8.gz", "man1/multiflexi-cli.1.gz"):
        assert (Path("/usr/share/man") / page).exists()


@pytest.mark.e2e
@pytest.mark.root_only
def test_import_as_root_leaves_every_file_to_multiflexi(installed: Installation) -> None:
    """What upstream apps' postinsts do (as root) must leave nothing the daemon can't write."""
    # The real upstream apps of shared/multiflexi/examples, as installed (world-readable,
    # like the files upstream packages install under /usr/share).
    examples = VENV / "lib/python3.11/site-packages/multiflexi/examples"
    out = cli("application:import-json", "--file", str(examples)).stdout
    assert re.search(r"\b(\d+) imported, 0 failed", out), out
    assert cli_json("application", "show", "--uuid",
                    "775ed801-2489-4981-bc14-d8a01cba1938")["name"] == "MultiFlexi Probe"
    import_echo_app(installed)
    # A secret makes secret.key; credentials and companies write to the database.
    cli("credential-type", "import-json", "--file", str(examples / "credential-types/Probe.json"))
    cli("company", "create", "--name", "Acme", "--slug", "acme")
    cli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "probe",
        "--field", "PASSWORD=s3cret")

    not_ours = [f"{p} ({p.owner()}:{p.group()})" for p in [DATA, *DATA.rglob("*")]
                if (p.owner(), p.group()) != (USER, USER)]
    assert not not_ours, "root left files the daemon cannot write:\n" + "\n".join(not_ours)
    assert (DATA / "secret.key").exists() and (DATA / "multiflexi.db").exists()
    # The service user writes after root.
    run(["runuser", "-u", USER, "--", "/usr/bin/multiflexi-cli", "company", "create",
         "--name", "Written by multiflexi", "--slug", "by-multiflexi"], cwd="/")
    assert cli_json("credential", "show", "--id", "1")["name"] == "probe"


def import_echo_app(installed: Installation) -> None:
    """A tiny native app, imported as root by a path relative to the current directory.

    The file must be readable by user multiflexi, as the CLI runs as that user (files
    that upstream packages install under /usr/share are).
    """
    readable = Path(tempfile.mkdtemp(prefix="multiflexi-e2e-apps-"))
    installed.cleanups.append(lambda: shutil.rmtree(readable, ignore_errors=True))
    readable.chmod(0o755)
    (readable / "echo.app.json").write_text(json.dumps(ECHO_APP))
    (readable / "echo.app.json").chmod(0o644)
    cli("application:import-json", "--file", "echo.app.json", cwd=readable)


# --- the daemon, the CLI through it, the TUI -------------------------------------------------


class Notifications:
    """A NOTIFY_SOCKET read all the time, as systemd reads it (a sender whose datagrams
    nobody reads would block once the socket's queue is full). Abstract, so that user
    multiflexi reaches it."""

    def __init__(self) -> None:
        self.address = f"@multiflexi-e2e-notify-{os.getpid()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.received: list[str] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                self.received += self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                continue
            except OSError:
                return

    def wait_for(self, line: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
        """Whether ``line`` arrived within ``timeout`` (False once the process is gone)."""
        deadline = time.monotonic() + timeout
        while line not in self.received:
            if proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.3)  # what it sent just before it ended
                return line in self.received
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self._closed.set()
        self._reader.join(timeout=2)
        self.sock.close()


def wait_job(job_id: int, daemon_log: Path, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = cli_json("job", "show", "--id", str(job_id))
        if job["state"] not in ("pending", "scheduled", "running"):
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job['state']} after {timeout} s; "
                        f"the daemon's output:\n{daemon_log.read_text()}")
        time.sleep(0.3)


@contextlib.contextmanager
def daemon_as_the_service_runs_it(
        tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Notifications, Path]]:
    """The daemon started by hand the way the installed multiflexid.service starts it:
    its ExecStart=, User=, Group=, RuntimeDirectory=, a NOTIFY_SOCKET, a watchdog (2 s
    rather than the unit's 30 s, so that the test sees it ping)."""
    unit = dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                if "=" in line and not line.startswith("#"))
    user, group = pwd.getpwnam(unit["User"]), grp.getgrnam(unit["Group"])
    run_dir = Path("/run") / unit["RuntimeDirectory"]
    assert run_dir == RUN
    run_dir.mkdir(mode=int(unit["RuntimeDirectoryMode"], 8), exist_ok=True)
    os.chown(run_dir, user.pw_uid, group.gr_gid)
    notify = Notifications()
    log_path = tmp_path / "multiflexid.log"
    env = {"PATH": ADMIN_ENV["PATH"], "LANG": "C.UTF-8", "NOTIFY_SOCKET": notify.address,
           "WATCHDOG_USEC": "2000000", "HOME": user.pw_dir, "USER": user.pw_name,
           "LOGNAME": user.pw_name}
    daemon = None
    try:
        with log_path.open("wb") as log:
            daemon = subprocess.Popen(
                shlex.split(unit["ExecStart"]), cwd="/", env=env, user=user.pw_uid,
                group=group.gr_gid, extra_groups=os.getgrouplist(user.pw_name, group.gr_gid),
                umask=int(unit["UMask"], 8), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        if not notify.wait_for("READY=1", daemon, timeout=60):
            stop(daemon)
            pytest.fail(f"/usr/bin/multiflexid did not start (exit code {daemon.returncode}, "
                        f"notifications {notify.received}); its output:\n"
                        f"{log_path.read_text()}")
        yield daemon, notify, log_path
    except OSError as exc:
        pytest.fail(f"/usr/bin/multiflexid cannot start: {exc}")
    finally:
        if daemon is not None:
            stop(daemon)
        notify.close()
        shutil.rmtree(RUN, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.root_only
def test_installed_daemon_runs_a_job(installed: Installation, tmp_path: Path) -> None:
    with daemon_as_the_service_runs_it(tmp_path) as (daemon, notify, log_path):
        assert notify.wait_for("WATCHDOG=1", daemon, timeout=5), notify.received
        assert "daemon         running" in cli("status").stdout

        import_echo_app(installed)
        cli("company", "create", "--name", "E2E Daemon", "--slug", "e2e-daemon")
        template = cli_json("runtemplate", "create", "--app", ECHO_APP_UUID, "--company",
                            "e2e-daemon", "--name", "e2e-echo", "--interv", "n",
                            "--executor", "Native")
        job = cli_json("runtemplate", "run", "--id", str(template["id"]))
        done = wait_job(int(job["id"]), log_path)
        assert (done["state"], done["exitcode"]) == ("succeeded", 0), (done,
                                                                       log_path.read_text())
        assert "hello from multiflexi" in cli("job", "output", "--id", str(job["id"])).stdout
        not_ours = [str(p) for p in DATA.rglob("*") if p.owner() != USER]
        assert not not_ours, not_ours

        screen = tui_screen_showing("e2e-echo")
        print(f"multiflexi-tui, as a member of group multiflexi sees it:\n{screen}")
        assert "e2e-echo" in screen, f"the TUI does not show the job:\n{screen}"

        daemon.send_signal(signal.SIGTERM)  # what `systemctl stop` sends (KillMode=mixed)
        assert daemon.wait(timeout=40) == 0, log_path.read_text()
        assert notify.wait_for("STOPPING=1", daemon, timeout=1), notify.received
    assert not our_processes(pwd.getpwnam(USER).pw_uid)


def tui_screen_showing(expected: str, timeout: float = 30) -> str:
    """multiflexi-tui in tmux, as an admin in group multiflexi (not root): its screen once
    it shows ``expected`` (or when it gave up or ended: then with what it printed)."""
    home = Path(tempfile.mkdtemp(prefix="multiflexi-e2e-tui-"))  # reachable for nobody
    nobody = pwd.getpwnam("nobody")
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    tmux = ["tmux", "-L", f"multiflexi-e2e-{os.getpid()}"]
    command = (f"setpriv --reuid=nobody --regid={USER} --clear-groups env HOME={home} "
               f"TERM=xterm-256color /usr/bin/multiflexi-tui")
    try:
        run([*tmux, "new-session", "-d", "-s", "tui", "-x", "120", "-y", "40"])
        # A TUI that dies leaves its last words on the screen.
        run([*tmux, "set-option", "-t", "tui", "remain-on-exit", "on"])
        run([*tmux, "respawn-pane", "-k", "-t", "tui", command])
        deadline = time.monotonic() + timeout
        while True:
            screen = run([*tmux, "capture-pane", "-p", "-t", "tui"]).stdout
            dead = run([*tmux, "display-message", "-p", "-t", "tui", "#{pane_dead}"]).stdout
            if expected in screen or dead.strip() == "1" or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        run([*tmux, "send-keys", "-t", "tui", "q"], check=False)
        time.sleep(0.5)
        return screen
    finally:
        run([*tmux, "kill-server"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --- removal ----------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.root_only
def test_remove_keeps_data_and_purge_leaves_nothing(installed: Installation,
                                                    timings: dict[str, float]) -> None:
    uid = pwd.getpwnam(USER).pw_uid
    env = {**ADMIN_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    run([*APT, "remove", PKG], env=env, timeout=300)
    assert dpkg_status() == "config-files"
    assert not Path("/usr/lib/multiflexi").exists(), list(Path("/usr/lib/multiflexi").rglob("*"))
    assert not Path("/usr/bin/multiflexi-cli").exists()
    # Configuration, data and the user stay until purge.
    assert CONF.exists() and (DATA / "multiflexi.db").exists() and user_exists()

    started = time.monotonic()
    result = purge()
    timings["purge (apt-get purge)"] = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert not left_over(), left_over()
    assert not our_processes(uid)


# --- multiflexid/privileges.py, on its own ---------------------------------------------------


def privileges_probe(data_dir: Path | None, argv: list[str] | None = None,
                     extra: str = "") -> subprocess.CompletedProcess[str]:
    """Run drop_to_data_dir_owner in a fresh python (the test's own venv) as root."""
    code = textwrap.dedent(f"""
        import json, os, subprocess
        from multiflexid.privileges import drop_to_data_dir_owner
        switched = drop_to_data_dir_owner({argv or []!r})
        print(json.dumps(dict(switched=switched, uid=os.getuid(), euid=os.geteuid(),
                              gid=os.getgid(), groups=sorted(os.getgroups()),
                              user=os.environ.get("USER"), home=os.environ.get("HOME"))))
    """) + textwrap.dedent(extra)
    env = {"PATH": ADMIN_ENV["PATH"], "USER": "root", "HOME": "/root",
           "MULTIFLEXI_CONFIG": os.devnull}
    if data_dir is not None:
        env["MULTIFLEXI_DATA_DIR"] = str(data_dir)
    return run([sys.executable, "-c", code], env=env, cwd=str(REPO), check=False)


@pytest.fixture
def nobody_data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    tmp_path.chmod(0o755)
    return data


@pytest.mark.root_only
@pytest.mark.usefixtures("require_root")
def test_root_becomes_the_data_dir_owner(nobody_data_dir: Path, tmp_path: Path) -> None:
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "app.json").write_text("{}")
    (secret_dir / "app.json").chmod(0o600)
    result = privileges_probe(nobody_data_dir, extra=f"""
        (open({str(nobody_data_dir / "made.txt")!r}, "w")).write("x")
        print(open({str(secret_dir / "app.json")!r}).read())      # root may read it: so may we
        try:
            open({str(secret_dir / "new.txt")!r}, "w")
        except PermissionError:
            print("cannot write root's files")
        child = subprocess.run(["cat", {str(secret_dir / "app.json")!r}], capture_output=True)
        print("child exit", child.returncode)                      # programs we run may not
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    state = json.loads(lines[0])
    nobody = pwd.getpwnam("nobody")
    assert state["switched"] == state["uid"] == state["euid"] == nobody.pw_uid
    assert state["gid"] == nobody.pw_gid
    assert state["groups"] == sorted(os.getgrouplist("nobody", nobody.pw_gid))
    assert state["user"] == "root"  # "launched by" still names who ran it
    assert state["home"] == nobody.pw_dir
    assert lines[1:] == ["{}", "cannot write root's files", "child exit 1"]
    assert (nobody_data_dir / "made.txt").owner() == "nobody"
    assert result.stderr == ""  # nothing said about it


@pytest.mark.root_only
@pytest.mark.usefixtures("require_root")
def test_root_stays_root_for_its_own_or_a_missing_data_dir(tmp_path: Path) -> None:
    for data_dir in (tmp_path, tmp_path / "missing"):
        state = json.loads(privileges_probe(data_dir).stdout.splitlines()[0])
        assert (state["switched"], state["uid"]) == (None, 0)


@pytest.mark.root_only
@pytest.mark.usefixtures("require_root")
def test_data_dir_comes_from_the_config_given_on_the_command_line(
        nobody_data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "multiflexi.conf"
    config.write_text(f'data_dir = "{nobody_data_dir}"\n')
    result = privileges_probe(None, ["--format", "json", "--config", str(config), "status"])
    assert json.loads(result.stdout.splitlines()[0])["uid"] == pwd.getpwnam("nobody").pw_uid


@pytest.mark.root_only
@pytest.mark.usefixtures("require_root")
def test_a_needed_switch_that_fails_stops_the_cli(nobody_data_dir: Path) -> None:
    """Root without CAP_SETUID (a confined container): exit 1 saying why, touch nothing."""
    code = "import sys; from multiflexid.privileges import become_data_dir_owner\n" \
           "become_data_dir_owner(sys.argv[1:]); print('carried on')"
    result = run(["setpriv", "--bounding-set=-setuid,-setgid", "--inh-caps=-setuid,-setgid",
                  sys.executable, "-c", code],
                 env={"PATH": ADMIN_ENV["PATH"], "MULTIFLEXI_CONFIG": os.devnull,
                      "MULTIFLEXI_DATA_DIR": str(nobody_data_dir)}, cwd=str(REPO), check=False)
    assert result.returncode == 1 and "carried on" not in result.stdout
    assert result.stderr.startswith("multiflexi-cli: error: cannot switch from root to nobody")


def test_config_option_is_found_before_the_command() -> None:
    from multiflexid.privileges import config_from_argv

    assert config_from_argv(["--config", "/x.conf", "status"]) == "/x.conf"
    assert config_from_argv(["--format", "json", "--config=/y.conf", "job", "list"]) == "/y.conf"
    assert config_from_argv(["status"]) is None
    assert config_from_argv(["--config"]) is None
    assert config_from_argv(["--", "--config", "/z"]) is None


# --- what the package ships, checked without building it ------------------------------------


def test_conffile_shows_every_setting_with_its_default(tmp_path: Path) -> None:
    from multiflexi.settings import Settings, load_settings

    text = (REPO / "debian/conf/multiflexi.conf").read_text()
    # As shipped (all commented out) it configures nothing.
    assert tomllib.loads(text) == {}
    names = [f.name for f in fields(Settings) if f.name != "config_path"]
    shown = re.findall(r"^# (\w+) = (.+)$", text, re.M)
    missing = sorted(set(names) - {k for k, _ in shown})
    unknown = sorted({k for k, _ in shown} - set(names))
    assert not missing and not unknown and len(shown) == len(names), (
        f"debian/conf/multiflexi.conf and Settings differ: add {missing}, drop {unknown}")
    values = tomllib.loads("\n".join(f"{k} = {v}" for k, v in shown if k != "node"))
    defaults = Settings()
    for key, value in values.items():
        default = getattr(defaults, key)
        if isinstance(default, tuple):  # TOML has lists
            default = list(default)
        assert value == (str(default) if isinstance(default, Path) else default), key
    # Uncommented, it is a valid configuration that changes nothing.
    uncommented = tmp_path / "multiflexi.conf"
    uncommented.write_text(re.sub(r"^# (\w+ = .+)$", r"\1", text.replace(
        '# node = "<host name>"', ""), flags=re.M))
    loaded = load_settings(uncommented, env={})
    assert replace(loaded, config_path=None) == defaults


def test_package_version_is_the_project_version() -> None:
    import multiflexi

    changelog = (REPO / "debian/changelog").read_text().splitlines()[0]
    assert changelog.startswith(f"multiflexi ({multiflexi.__version__})"), (
        f"debian/changelog says {changelog!r} but the project is {multiflexi.__version__}: "
        f"add a changelog entry (dch -v {multiflexi.__version__})")
