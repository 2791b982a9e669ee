"""Real Podman for tests: a containers.conf that works here, a local image, an API service.

What these machines need (see ../shared/PLATFORM.md): ``runc`` (crun fails on the hybrid
cgroups), ulimits the container may set (nofile ≤ 20000), and an image built locally
from busybox-static because no registry is reachable.

Helpers (usable without pytest):

- ``write_containers_conf(dir)`` -> path of a containers.conf with runc and ulimits;
- ``podman_env(conf)`` -> the environment for podman processes (``CONTAINERS_CONF`` set);
- ``ensure_test_image(env)`` builds ``localhost/multiflexi-test:latest`` once (rebuilt
  only when it lacks an applet of ``APPLETS``) from ``rootfs_tar()`` (which the Docker
  tests import too); ``image_exists(name, env)``;
- ``PodmanService(sock_path, env)`` starts ``podman system service --time=0`` on a Unix
  socket (``.url``, ``.stop()``, ``.kill()``, ``.pause()``/``.resume()``, context manager);
- ``job_containers(env)`` / ``remove_job_containers(env)``: containers labelled
  ``multiflexi.job_id`` (what PodmanExecutor creates), to assert none is left behind.

Session fixtures — import them into a test module or conftest (``from
tests.support.podman import podman_conf, podman_image, podman_service``):

- ``podman_conf`` -> ``PodmanSetup`` (``.conf``, ``.env``); also sets ``CONTAINERS_CONF``
  in this process for the session, so every podman started by the tests uses it;
- ``podman_image`` -> the test image's name (built if missing);
- ``podman_service`` -> a running ``PodmanService``; its ``.url`` is what the daemon's
  ``podman_url`` setting (``MULTIFLEXI_PODMAN_URL``) should be. At the end it is stopped and
  every container labelled ``multiflexi.job_id`` that was not there before is removed.

If podman is not installed the fixtures fail with the apt-get line (like PostgreSQL, the
Podman tests are never silently skipped; deselect them with ``-m "not podman"``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import ServiceProcess

TEST_IMAGE = "localhost/multiflexi-test:latest"
# Busybox applets the test image has; tests and e2e apps may use only these.
APPLETS = ("sh", "echo", "cat", "ls", "sleep", "env", "true", "false", "mkdir", "printf",
           "id", "kill", "wc", "head", "od", "ps")
APPLETS_LABEL = "org.multiflexi.test.applets"
JOB_LABEL = "multiflexi.job_id"
APT_HINT = ("apt-get install -y podman runc uidmap fuse-overlayfs slirp4netns catatonit "
            "busybox-static")
CONTAINERS_CONF = """\
# Written by tests/support/podman.py (see shared/PLATFORM.md).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
"""


class PodmanSetupError(RuntimeError):
    pass


def write_containers_conf(directory: Path) -> Path:
    path = directory / "containers.conf"
    path.write_text(CONTAINERS_CONF)
    return path


def podman_env(conf: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["CONTAINERS_CONF"] = str(conf)
    return env


def _podman(env: Mapping[str, str], *args: str, stdin: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("podman") is None:
        raise PodmanSetupError(f"podman is not installed: {APT_HINT}")
    return subprocess.run(["podman", *args], input=stdin, capture_output=True, env=dict(env),
                          timeout=timeout, check=False)


def image_exists(name: str, env: Mapping[str, str]) -> bool:
    return _podman(env, "image", "exists", name).returncode == 0


def _image_applets(name: str, env: Mapping[str, str]) -> set[str]:
    proc = _podman(env, "image", "inspect", "--format",
                   f'{{{{index .Labels "{APPLETS_LABEL}"}}}}', name)
    return set(proc.stdout.decode().split(",")) if proc.returncode == 0 else set()


def rootfs_tar() -> bytes:
    """The test image's file system as a tar: /bin/busybox (busybox-static) and APPLETS."""
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise PodmanSetupError(f"/bin/busybox is missing: {APT_HINT}")
    with tempfile.TemporaryDirectory(prefix="mf-rootfs-") as tmp:
        root = Path(tmp)
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev"):
            (root / d).mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        return subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                              check=True).stdout


# What `import` applies to the rootfs (for Podman and Docker alike).
IMAGE_CHANGES = (f"LABEL {APPLETS_LABEL}={','.join(APPLETS)}", 'CMD ["/bin/sh"]')


def image_import_args(name: str = TEST_IMAGE) -> list[str]:
    """`podman` arguments that import rootfs_tar() from stdin as ``name``."""
    changes = [arg for change in IMAGE_CHANGES for arg in ("--change", change)]
    return ["import", *changes, "-", name]


def ensure_test_image(env: Mapping[str, str], name: str = TEST_IMAGE) -> str:
    """Build ``name`` from /bin/busybox (busybox-static) unless it exists with APPLETS."""
    if image_exists(name, env) and set(APPLETS) <= _image_applets(name, env):
        return name
    proc = _podman(env, *image_import_args(name), stdin=rootfs_tar())
    if proc.returncode != 0:
        raise PodmanSetupError(f"podman import failed: {proc.stderr.decode().strip()}")
    return name


def job_containers(env: Mapping[str, str]) -> list[str]:
    """Names of all containers (any state) labelled ``multiflexi.job_id``."""
    proc = _podman(env, "ps", "-a", "--filter", f"label={JOB_LABEL}", "--format", "json")
    if proc.returncode != 0:
        raise PodmanSetupError(f"podman ps failed: {proc.stderr.decode().strip()}")
    return [n for c in json.loads(proc.stdout or b"[]") for n in c.get("Names", [])]


def remove_job_containers(env: Mapping[str, str], keep: Collection[str] = ()) -> None:
    """Remove job containers (except those named in ``keep``, e.g. ones that predate us)."""
    for name in job_containers(env):
        if name not in keep:
            _podman(env, "rm", "-f", "-t", "0", name)


class PodmanService(ServiceProcess):
    """``podman system service --time=0 unix://<sock>`` as a child process."""

    def __init__(self, sock: Path, env: Mapping[str, str]) -> None:
        self.sock = sock
        self.env = dict(env)
        self.url = f"unix://{sock}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = sock.with_suffix(".log")

    def start(self, wait: float = 15.0) -> PodmanService:
        if shutil.which("podman") is None:
            raise PodmanSetupError(f"podman is not installed: {APT_HINT}")
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["podman", "system", "service", "--time=0", self.url],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                # conmon works in its inherited directory (it writes a file "oom" there
                # when a container is OOM-killed): keep it out of the checkout
                cwd=self.sock.parent,
            )
        deadline = time.monotonic() + wait
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PodmanSetupError(
                    f"podman system service did not come up on {self.sock}: "
                    f"{self.log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.05)
        return self

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            try:
                s.connect(str(self.sock))
            except OSError:
                return False
        return True

    def stop(self) -> None:
        self._end(10)
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()

    def __enter__(self) -> PodmanService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class PodmanSetup:
    root: Path
    conf: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def podman_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanSetup]:
    root = tmp_path_factory.mktemp("podman")
    conf = write_containers_conf(root)
    saved = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)
    try:
        yield PodmanSetup(root, conf, podman_env(conf))
    finally:
        if saved is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = saved


@pytest.fixture(scope="session")
def podman_image(podman_conf: PodmanSetup) -> str:
    try:
        return ensure_test_image(podman_conf.env)
    except PodmanSetupError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def podman_service(podman_conf: PodmanSetup, podman_image: str) -> Iterator[PodmanService]:
    service = PodmanService(podman_conf.root / "podman.sock", podman_conf.env)
    try:
        before = set(job_containers(podman_conf.env))
        service.start()
    except PodmanSetupError as e:
        pytest.fail(str(e))
    try:
        yield service
    finally:
        service.stop()
        remove_job_containers(podman_conf.env, keep=before)
