"""A real Docker Engine for tests: Debian's ``docker.io`` dockerd, started by the session.

Why dockerd and not Podman's Docker-compatible API: it is the engine the Docker executor
meets on users' machines, and it differs from Podman's emulation in what matters here
(log drivers, its init, wait and stop parameters, version negotiation). It starts here in
about a second, as root (dockerd has no rootless mode in Debian 12), so the Docker tests
are ``root_only``.

Each ``DockerService`` is a dockerd of its own that touches nothing of the machine's: it
runs in private network and mount namespaces (``unshare``) — its bridge, its iptables
rules and its overlay mounts exist only there — with a private ``/run`` (containerd puts
its shims' sockets under /run), and its data, exec root, pid file, config file and API
socket in one temporary directory. It reads no ``/etc/docker/daemon.json``.
``live_restore=True`` lets containers outlive the service (for restart tests). Stopping
it removes every container it has first, so nothing keeps running afterwards.

Session fixture ``docker_service`` (import it like the Podman ones): a running service
with the test image (``tests.support.podman.TEST_IMAGE``) imported from the same rootfs as
Podman's. ``.url`` is what ``docker_url`` (``MULTIFLEXI_DOCKER_URL``) should be.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.support.podman import APPLETS, APPLETS_LABEL, IMAGE_CHANGES, TEST_IMAGE, rootfs_tar
from tests.support.services import ServiceProcess

APT_HINT = "apt-get install -y docker.io busybox-static"
# Inside the private namespaces: <root>/run is /run (containerd keeps its shims' sockets
# there; the same directory again after a restart, so live restore finds them), then dockerd.
_START = """set -e
mount --bind "$1" /run
shift
exec dockerd "$@"
"""


class DockerSetupError(RuntimeError):
    pass


class DockerService(ServiceProcess):
    """``dockerd`` as a child process, its API on ``<root>/docker.sock``."""

    def __init__(self, root: Path, *, live_restore: bool = False) -> None:
        self.root = root
        self.sock = root / "docker.sock"
        self.url = f"unix://{self.sock}"
        self.live_restore = live_restore
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "dockerd.log"
        self.killed = False  # by kill(): containers may outlive it

    def start(self, wait: float = 30.0) -> DockerService:
        if os.geteuid() != 0:
            raise DockerSetupError("dockerd needs root: run the Docker tests as root")
        if shutil.which("dockerd") is None:
            raise DockerSetupError(f"dockerd is not installed: {APT_HINT}")
        (self.root / "daemon.json").write_text("{}\n")
        (self.root / "run").mkdir(mode=0o755, exist_ok=True)
        self._forget_dead_containerd()
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        args = [
            "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.root / "docker.pid"),
            "--config-file", str(self.root / "daemon.json"), "--host", self.url,
            "--iptables=false", "--ip6tables=false",
        ]
        if self.live_restore:
            args.append("--live-restore")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "slave", "--",
                 "sh", "-c", _START, "dockerd", str(self.root / "run"), *args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.root,
            )
        deadline = time.monotonic() + wait
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DockerSetupError(f"dockerd did not come up on {self.sock}: "
                                       f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        return self

    def _forget_dead_containerd(self) -> None:
        """After a kill, the old containerd may linger as a zombie (PID 1 reaps it when it
        gets to it); dockerd takes a zombie named in containerd.pid for a live containerd
        and waits for it in vain. A dead one's pid file goes; a live one gets 10 s to end."""
        pidfile = self.root / "exec" / "containerd" / "containerd.pid"
        deadline = time.monotonic() + 10
        while pidfile.exists():
            try:
                stat = Path(f"/proc/{int(pidfile.read_text())}/stat").read_text()
            except (OSError, ValueError):
                stat = ""
            if not stat or stat[stat.rindex(")") + 2] in "ZX" or time.monotonic() > deadline:
                pidfile.unlink(missing_ok=True)
                return
            time.sleep(0.1)

    def client(self, timeout: float = 30) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, version="auto", timeout=timeout)

    def answers(self) -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            try:
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.0 200")
            except OSError:
                return False

    def ensure_image(self, name: str = TEST_IMAGE) -> str:
        with self.client() as api:
            with contextlib.suppress(docker.errors.ImageNotFound):
                labels = api.inspect_image(name)["Config"]["Labels"] or {}
                if set(APPLETS) <= set(labels.get(APPLETS_LABEL, "").split(",")):
                    return name
            repository, tag = name.rsplit(":", 1)
            api.import_image_from_data(rootfs_tar(), repository=repository, tag=tag,
                                       changes=list(IMAGE_CHANGES))
        return name

    def remove_all_containers(self) -> None:
        with self.client() as api:
            for c in api.containers(all=True):
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(c["Id"], force=True, v=True)

    def kill(self) -> None:
        """SIGKILL, as if dockerd crashed: its containers (and their containerd shims) keep
        running, so the next :meth:`stop` starts it again to remove them."""
        self.killed = self.running()
        super().kill()

    def stop(self) -> None:
        """Remove every container, then stop dockerd (and so its containerd and shims)."""
        if not self.running() and self.killed:
            self.killed = False
            with contextlib.suppress(DockerSetupError):
                self.start()
        if self.running():
            self.resume()
            with contextlib.suppress(Exception):
                if self.answers():
                    self.remove_all_containers()
        self._end(30)
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()

    def __enter__(self) -> DockerService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def docker_root() -> Iterator[Path]:
    """A directory for a dockerd of its own (short, for the socket path's sake); removed
    afterwards with everything the service left in it."""
    root = Path(tempfile.mkdtemp(prefix="mf-docker-"))
    try:
        yield root
    finally:
        for _ in range(20):  # containerd may still be going away
            shutil.rmtree(root, ignore_errors=True)
            if not root.exists():
                break
            time.sleep(0.25)


@pytest.fixture(scope="session")
def docker_service() -> Iterator[DockerService]:
    with docker_root() as root:
        service = DockerService(root)
        try:
            service.start()
            service.ensure_image()
        except (DockerSetupError, docker.errors.DockerException) as e:
            service.stop()
            pytest.fail(str(e))
        try:
            yield service
        finally:
            service.stop()
