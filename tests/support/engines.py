"""The container engines the executor tests run on, behind one small test-side interface.

``engine`` (a pytest fixture, parametrized Podman | Docker) gives an :class:`Engine`:
its API URL, its executor class, what it adds to a job's environment, and ways to look at
and tidy its containers while a test runs — through each engine's own client library, so
a test never trusts the executor to report on itself. ``engine.private(tmp_path)`` starts
an API service of the test's own, to stop, pause, kill or restart.

Podman runs through ``tests.support.podman`` (rootless or rootful), Docker through
``tests.support.docker`` (a dockerd of the session's own, root only).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import docker
import pytest
from podman import PodmanClient
from podman.errors import APIError as PodmanAPIError
from podman.errors import NotFound as PodmanNotFound

from multiflexid.executors.container import JOB_LABEL, ContainerExecutor
from multiflexid.executors.docker import DockerExecutor
from multiflexid.executors.podman import PodmanExecutor
from tests.support.docker import DockerService, docker_root
from tests.support.podman import TEST_IMAGE, PodmanService, PodmanSetup

ENGINE_PARAMS = [
    pytest.param("Podman", marks=pytest.mark.podman, id="podman"),
    pytest.param("Docker", marks=[pytest.mark.docker, pytest.mark.root_only], id="docker"),
]


class Service(Protocol):
    url: str

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


@dataclass
class Engine:
    name: str  # "Podman" or "Docker": the executor name templates use
    url: str
    executor_class: type[ContainerExecutor]
    adds: frozenset[str]  # variables the engine puts into every container's environment

    @property
    def cli(self) -> str:
        return self.executor_class.cli

    def executor(self, url: str | None = None, **kw: Any) -> ContainerExecutor:
        kw.setdefault("api_timeout", 10)
        return self.executor_class(url or self.url, **kw)

    # -- looking at containers (the engine's own client) ---------------------------------

    def inspect(self, name: str, url: str | None = None) -> dict[str, Any] | None:
        """The container's inspect document (None if there is none) from the session's
        service, or from the one at ``url`` (a private one)."""
        raise NotImplementedError

    def exists(self, name: str, url: str | None = None) -> bool:
        return self.inspect(name, url) is not None

    def job_containers(self) -> list[str]:
        """Names of all containers (any state) labelled ``multiflexi.job_id``."""
        raise NotImplementedError

    def force_remove(self, name: str) -> None:
        raise NotImplementedError

    def start_container(self, name: str, command: list[str],
                        labels: dict[str, str] | None = None) -> None:
        """A container of the test image that is not the executor's doing."""
        raise NotImplementedError

    @contextlib.contextmanager
    def private(self, tmp_path: Path) -> Iterator[Service]:
        raise NotImplementedError
        yield


class PodmanEngine(Engine):
    def __init__(self, service: PodmanService, setup: PodmanSetup) -> None:
        super().__init__("Podman", service.url, PodmanExecutor,
                         frozenset({"PATH", "TERM", "container", "HOSTNAME", "HOME"}))
        self.setup = setup

    @contextlib.contextmanager
    def _client(self, url: str | None = None) -> Iterator[PodmanClient]:
        with PodmanClient(base_url=url or self.url, timeout=10) as client:
            yield client

    def inspect(self, name: str, url: str | None = None) -> dict[str, Any] | None:
        with self._client(url) as api:
            try:
                return dict(api.containers.get(name).attrs)
            except PodmanNotFound:
                return None
            except PodmanAPIError as e:  # removed meanwhile: 500 "no such container"
                if "no such container" in str(e):
                    return None
                raise

    def job_containers(self) -> list[str]:
        from tests.support.podman import job_containers
        return job_containers(self.setup.env)

    def force_remove(self, name: str) -> None:
        with self._client() as api:  # timeout 0: kill at once, don't wait 10 s first
            api.api.delete(f"/containers/{name}", params={"force": True, "timeout": 0})

    def start_container(self, name: str, command: list[str],
                        labels: dict[str, str] | None = None) -> None:
        with self._client() as api:
            api.containers.create(TEST_IMAGE, command=command, name=name, labels=labels or {},
                                  network_mode="none").start()

    @contextlib.contextmanager
    def private(self, tmp_path: Path) -> Iterator[Service]:
        with PodmanService(tmp_path / "p.sock", self.setup.env) as service:
            yield service


class DockerEngine(Engine):
    def __init__(self, service: DockerService) -> None:
        super().__init__("Docker", service.url, DockerExecutor,
                         frozenset({"PATH", "HOSTNAME", "HOME"}))
        self.service = service

    def inspect(self, name: str, url: str | None = None) -> dict[str, Any] | None:
        with docker.APIClient(base_url=url or self.url, version="auto", timeout=10) as api:
            try:
                return dict(api.inspect_container(name))
            except docker.errors.NotFound:
                return None

    def job_containers(self) -> list[str]:
        with self.service.client(10) as api:
            return [n.lstrip("/") for c in api.containers(all=True, filters={"label": JOB_LABEL})
                    for n in c["Names"]]

    def force_remove(self, name: str) -> None:
        with self.service.client(10) as api, contextlib.suppress(docker.errors.NotFound):
            api.remove_container(name, force=True)

    def start_container(self, name: str, command: list[str],
                        labels: dict[str, str] | None = None) -> None:
        with self.service.client(10) as api:
            created = api.create_container(
                TEST_IMAGE, command=command, name=name, labels=labels or {},
                host_config=api.create_host_config(network_mode="none"))
            api.start(created["Id"])

    @contextlib.contextmanager
    def private(self, tmp_path: Path) -> Iterator[Service]:
        # Live restore: its containers outlive a stop or a crash of dockerd, as Podman's do.
        with docker_root() as root, DockerService(root, live_restore=True) as service:
            service.ensure_image()
            yield service


def engine_for(request: pytest.FixtureRequest, name: str) -> Engine:
    """The Engine ``name``, with its session service started (on first use)."""
    if name == "Podman":
        return PodmanEngine(request.getfixturevalue("podman_service"),
                            request.getfixturevalue("podman_conf"))
    return DockerEngine(request.getfixturevalue("docker_service"))
