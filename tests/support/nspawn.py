"""A booted Debian 12 in a systemd-nspawn container: the package tested as admins run it.

- ``debian_tree(debs)`` -> a tarball of a minimal bookworm (systemd as init, python3,
  openssh-server, Podman, and what ``debs`` depend on) made with mmdebstrap from the
  Debian mirror this machine's own apt sources name. It is cached
  (``/var/cache/multiflexi-tests`` for root, else ``$XDG_CACHE_HOME/multiflexi-tests``)
  under a name derived from everything it is made of, so it is built once (~80-120 s)
  and rebuilt only when the recipe, the dependencies or the mirror change.
- ``Machine(tarball, workdir, name)``: a fresh copy of that tree (``unpack()``), booted with
  systemd-nspawn (``boot()``), commands run inside with nsenter (``run``/``sh``, as root or
  as a user through a login shell), ``poweroff()``/``boot()`` again, ``destroy()``.

The container has a network of its own (``--private-network``: only its loopback), so
nothing in it listens on this machine's ports, and it keeps CAP_NET_ADMIN there, which
Podman needs to set up a job container's network namespace (nspawn drops it from a
container that shares the host's network). Programs of this machine reach the
container's network through ``in_netns(argv)`` (e.g. ``ssh`` to its sshd). Installing
needs no network: the tree has every package the .deb depends on (``debian_tree``
adds them to its recipe). A container is never left running: ``destroy()`` powers it off
(or kills it), and it gets SIGTERM — a clean poweroff — if the test process dies.

It boots with the unified cgroup hierarchy (cgroup v2, as Debian 12 hosts have by
default) even on a host with a v1/v2 hybrid: there the v1 controllers are read-only
inside the container, and Podman cannot start containers at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SUITE = "bookworm"
SUITES = (SUITE, f"{SUITE}-updates", f"{SUITE}-security")
# What the tests need in the booted system: systemd as PID 1, what the package depends on
# (so that installing it needs no download), the TUI's way in, and Podman with what
# tests/support/podman.py uses on the host.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "adduser", "procps",
    "openssh-server",
    "podman", "runc", "uidmap", "fuse-overlayfs", "slirp4netns", "catatonit", "busybox-static",
)
# Off in the tree: sshd (started by the tests that use it), and timers that would run
# apt or housekeeping behind the tests' back.
DISABLED_UNITS = (
    "ssh.service", "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "fstrim.timer", "podman-auto-update.timer",
)
RECIPE_VERSION = 1  # bump when the way the tree is made changes
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class MachineError(RuntimeError):
    """The tree cannot be built or the container does not boot; the message says why."""


def _die_with_parent() -> None:
    """In systemd-nspawn: SIGTERM (a clean poweroff of the container) when the test
    process dies, so that no container (nor its sshd) outlives the test run."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


# --- the tree ---------------------------------------------------------------------------------


def debian_mirrors() -> list[str]:
    """sources.list lines for bookworm, -updates and -security, with the URIs this
    machine's apt sources give for them (``apt-get indextargets``): the container uses
    the same mirror as the machine, whatever it is."""
    listed = subprocess.run(
        ["apt-get", "indextargets", "--no-release-info", "--format",
         "$(REPO_URI)\t$(RELEASE)\t$(TARGET_OF)\t$(IDENTIFIER)"],
        capture_output=True, text=True, check=False, timeout=60)
    found: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        uri, release, kind, ident = [*line.split("\t"), "", "", ""][:4]
        if kind == "deb" and ident == "Packages" and release in SUITES:
            found.setdefault(release, uri.rstrip("/"))
    if SUITE not in found:
        raise MachineError(
            f"this machine's apt sources name no mirror for {SUITE} (apt-get indextargets "
            f"found {sorted(found) or 'nothing'}); add one to /etc/apt/sources.list.d/")
    return [f"deb {found[s]} {s} main" for s in SUITES if s in found]


def cache_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/cache/multiflexi-tests")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "multiflexi-tests"


def depends_of(deb: Path) -> list[str]:
    """The packages a .deb depends on (the first of each set of alternatives)."""
    fields = subprocess.run(["dpkg-deb", "--field", str(deb), "Pre-Depends", "Depends"],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    names = set()
    for line in fields.splitlines():
        _, _, value = line.partition(":")
        for dep in value.split(","):
            first = dep.split("|")[0].strip()
            if first:
                names.add(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return sorted(names)


def _recipe(mirrors: Sequence[str], packages: Sequence[str]) -> dict[str, object]:
    return {"version": RECIPE_VERSION, "suite": SUITE, "packages": list(packages),
            "disabled": sorted(DISABLED_UNITS), "mirrors": list(mirrors)}


def debian_tree(for_debs: Sequence[Path] = (),
                log: Callable[[str], None] = print) -> tuple[Path, float | None]:
    """The cached tarball of the tree (with what ``for_debs`` depend on), built first if
    needed: (path, seconds it took to build, or None when it came from the cache)."""
    mirrors = debian_mirrors()
    packages = sorted({*PACKAGES, *(p for deb in for_debs for p in depends_of(deb))})
    recipe = _recipe(mirrors, packages)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debian-{SUITE}-{key}.tar"
    with (cache / "debian-tree.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once build it once
        if tarball.exists():
            return tarball, None
        log(f"building the {SUITE} tree for the booted-system tests (mmdebstrap, cached as "
            f"{tarball})")
        if shutil.which("mmdebstrap") is None:
            raise MachineError("mmdebstrap is not installed (apt-get install mmdebstrap "
                               "systemd-container; .ci/system-packages.sh)")
        partial = tarball.with_suffix(".partial.tar")
        hook = "systemctl --root=\"$1\" --quiet disable " + " ".join(DISABLED_UNITS)
        started = time.monotonic()
        result = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={','.join(packages)}",
             # apt's lists stay, so that apt-get inside works like on a real machine
             "--skip=cleanup/apt/lists", f"--customize-hook={hook}",
             SUITE, str(partial), *mirrors],
            capture_output=True, text=True, timeout=1800, check=False,
            env={"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "TMPDIR": "/tmp"})
        seconds = time.monotonic() - started
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
            raise MachineError(f"mmdebstrap failed (exit {result.returncode}):\n{tail}")
        partial.rename(tarball)
        (cache / f"debian-{SUITE}-{key}.json").write_text(json.dumps(recipe, indent=1))
        for old in cache.glob(f"debian-{SUITE}-*"):  # earlier recipes: ~400 MB each
            if not old.name.startswith(f"debian-{SUITE}-{key}"):
                old.unlink()
        log(f"built {tarball} ({tarball.stat().st_size >> 20} MiB) in {seconds:.0f} s")
        return tarball, seconds


# --- the machine --------------------------------------------------------------------------


class Machine:
    """One container: a fresh copy of the tree in ``workdir``/root, booted on demand."""

    def __init__(self, tarball: Path, workdir: Path, name: str) -> None:
        self.tarball = tarball
        self.workdir = workdir
        self.root = workdir / "root"
        self.name = name
        self.console = workdir / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None  # the container's PID 1, as this machine sees it
        self.boots = 0

    def path(self, inside: str) -> Path:
        """Where a path of the container is on this machine (its tree is a directory)."""
        return self.root / inside.lstrip("/")

    def unpack(self) -> float:
        started = time.monotonic()
        self.root.mkdir(parents=True)
        # --numeric-owner: the tree's users are not this machine's (messagebus, ...)
        subprocess.run(["tar", "-C", str(self.root), "--numeric-owner", "--xattrs",
                        "--xattrs-include=*", "-xf", str(self.tarball)], check=True,
                       timeout=600)
        self.path("/etc/hostname").write_text(self.name + "\n")
        return time.monotonic() - started

    # --- booting and stopping -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def boot(self, timeout: float = 120) -> float:
        """Boot it and wait until systemd says the system is up; returns seconds."""
        assert not self.running, "already running"
        started = time.monotonic()
        self.boots += 1
        env = {"PATH": PATH, "LANG": "C.UTF-8",
               # cgroup v2 inside even on a hybrid host (see the module's docstring)
               "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        with self.console.open("ab") as console:
            console.write(f"\n--- boot {self.boots} ---\n".encode())
            console.flush()
            # --register=no --keep-unit: there is no system bus (or systemd) outside
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--quiet", f"--directory={self.root}", "--boot",
                 "--register=no", "--keep-unit", f"--machine={self.name}",
                 "--private-network",
                 # What runc needs for a job container (a session keyring, a cgroup
                 # device filter) and nspawn's seccomp filter refuses unless allowed.
                 "--system-call-filter=@keyring bpf"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                env=env, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        self.leader = None
        while self.leader is None:
            self.leader = self._find_leader()
            if self.leader is None:
                self._check_alive(deadline, "start systemd")
                time.sleep(0.05)
        while True:
            state = self.run(["systemctl", "is-system-running", "--wait"], check=False,
                             timeout=max(1.0, deadline - time.monotonic()))
            if state.stdout.strip() == "running":
                return time.monotonic() - started
            if state.stdout.strip() == "degraded":
                failed = self.run(["systemctl", "--failed", "--no-legend"], check=False)
                raise MachineError(f"{self.name} booted degraded:\n{failed.stdout}")
            self._check_alive(deadline, "finish booting")
            time.sleep(0.1)

    def _find_leader(self) -> int | None:
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return None
        for pid in children.split():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        return None

    def _check_alive(self, deadline: float, what: str) -> None:
        if not self.running or time.monotonic() > deadline:
            self.kill()
            raise MachineError(f"{self.name} did not {what}; its console:\n{self.console_tail()}")

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def poweroff(self, timeout: float = 120) -> float:
        """`systemctl poweroff` inside, and wait until the container is gone."""
        assert self.proc is not None
        started = time.monotonic()
        if self.running:
            self.run(["systemctl", "poweroff"], check=False, timeout=30)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise MachineError(f"{self.name} did not power off within {timeout} s; its "
                                   f"console:\n{self.console_tail()}") from None
        self.leader = None
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL to the container's PID 1 (so everything in it dies), then to nspawn."""
        if self.proc is None:
            return
        if self.leader is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.leader = None

    def destroy(self) -> None:
        """Power it off (killed if it does not go), then delete its tree."""
        try:
            if self.running:
                try:
                    self.poweroff(timeout=90)
                except MachineError:
                    pass  # killed by poweroff()
        finally:
            self.kill()
            shutil.rmtree(self.root, ignore_errors=True)

    # --- running things inside ----------------------------------------------------------

    def run(self, argv: Sequence[str], *, user: str | None = None, check: bool = True,
            timeout: float = 120, input: str | bytes | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the container, as root with a clean environment, or as ``user``
        through a login shell (`runuser -l`, what an SSH login gives them)."""
        assert self.leader is not None, f"{self.name} is not running"
        base = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root", "USER": "root",
                "LOGNAME": "root", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
                "DEBIAN_FRONTEND": "noninteractive", **(env or {})}
        command = list(argv)
        if user is not None:
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
            line = f"cd && {'export ' + exports + ' && ' if exports else ''}{shlex.join(argv)}"
            command = ["runuser", "-l", user, "-c", line]
        full = ["nsenter", f"--target={self.leader}", "--all", "--", "env", "-i",
                *[f"{k}={v}" for k, v in base.items()], *command]
        raw = subprocess.run(full, capture_output=True, timeout=timeout, check=False,
                             input=input.encode() if isinstance(input, str) else input)
        result = subprocess.CompletedProcess(
            raw.args, raw.returncode, raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"))
        if check and result.returncode != 0:
            raise MachineError(
                f"in {self.name}{' as ' + user if user else ''}: {shlex.join(argv)} exited "
                f"{result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def in_netns(self, argv: Sequence[str]) -> list[str]:
        """``argv`` (a program of this machine) as run in the container's network, e.g.
        ``ssh`` to an sshd in the container on its 127.0.0.1."""
        assert self.leader is not None, f"{self.name} is not running"
        return ["nsenter", f"--net=/proc/{self.leader}/ns/net", "--", *argv]

    def run_offline(self, argv: Sequence[str], *, user: str = "root",
                    timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``argv`` in the tree while the machine is off (systemd-nspawn without --boot),
        e.g. to change what a powered-off machine will find when it boots."""
        assert not self.running, f"{self.name} is running"
        result = subprocess.run(
            ["systemd-nspawn", "--quiet", f"--directory={self.root}", "--register=no",
             "--keep-unit", f"--user={user}", "--", *argv],
            capture_output=True, text=True, timeout=timeout, check=False,
            env={"PATH": PATH, "LANG": "C.UTF-8", "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})
        if result.returncode != 0:
            raise MachineError(f"in the tree of {self.name}: {shlex.join(argv)} exited "
                               f"{result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def sh(self, script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-euc", script], **kwargs)

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        """A file in the container (made by root; parents made as needed)."""
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)


@contextlib.contextmanager
def booted(tarball: Path, workdir: Path, name: str) -> Iterator[Machine]:
    """A fresh machine, booted; destroyed (powered off, tree deleted) at the end."""
    machine = Machine(tarball, workdir, name)
    try:
        machine.unpack()
        machine.boot()
        yield machine
    finally:
        machine.destroy()
