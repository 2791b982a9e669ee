"""DockerExecutor: runs a job in a container through the Docker Engine API (Docker SDK).

What every container job gets is in :mod:`multiflexid.executors.container`. Docker's part:

- a missing image is pulled (``pull=True`` by default; credentials from the daemon user's
  ``~/.docker/config.json``), and a pull that fails says why;
- Docker adds ``HOSTNAME``, ``HOME`` and the image's ``PATH`` to the environment unless
  ``spec.env`` sets them; the client's proxy settings are not copied in;
- network ``spec.limits.network``: ``none``, ``host``, ``bridge``, ``container:NAME`` or
  the name of a Docker network;
- ``docker-init`` (tini) is the init (``init=True``); the log driver is ``local``, which
  keeps stdout and stderr apart and the bytes exact (``json-file`` would turn bytes that
  are not UTF-8 into U+FFFD);
- the API version is the engine's own (asked on first contact, so an engine that is not
  running yet is no error until a job needs it).

The log stream and the waits go through the SDK's low-level request methods: its
``logs()`` merges stdout and stderr into one stream.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from typing import Any

import docker
from docker import auth
from docker.errors import NotFound
from docker.types import LogConfig, Mount
from docker.utils import parse_host, parse_repository_tag

from multiflexi.settings import DEFAULT_DOCKER_URL
from multiflexid.executors.container import (
    JOB_LABEL,
    OWNER_LABEL,
    ContainerExecutor,
    ContainerRequest,
    StartError,
)

NETWORK_MODES = frozenset({"none", "host", "bridge"})


class DockerExecutor(ContainerExecutor):
    """The Executor port on the Docker Engine API: ``DockerExecutor(settings.docker_url)``."""

    name = "docker"
    engine = "Docker"
    setting = "docker_url"
    cli = "docker"
    service_hint = "systemctl enable --now docker.socket"
    init_exec_failed = re.compile(rb"^\[FATAL tini \(\d+\)\] exec (?:[^\n]*) failed: ([^\n]*)\n")
    init_exec_exit = 127

    def __init__(self, base_url: str = DEFAULT_DOCKER_URL, *, pull: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(base_url, pull=pull, **kwargs)
        self._connecting = threading.Lock()
        try:
            parse_host(base_url)
        except Exception as e:  # e.g. an unsupported URL scheme
            self._bad_url(e)

    @property
    def _api(self) -> docker.APIClient:
        """The client, made on first contact (it asks the engine for its API version)."""
        with self._connecting:
            if self._client is None:
                self._client = docker.APIClient(base_url=self.base_url, version="auto",
                                                timeout=self.api_timeout, max_pool_size=64)
            client: docker.APIClient = self._client
            return client

    def _check_network(self, network: str) -> None:
        if network in NETWORK_MODES:
            return
        name = network.removeprefix("container:")
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
            raise StartError(f"unsupported network mode {network!r}")

    def _post(self, path: str, *args: str, **kwargs: Any) -> Any:
        api = self._api
        response = api._post(api._url(path, *args), **kwargs)
        api._raise_for_status(response)
        return response

    # -- the API ------------------------------------------------------------------------

    def _api_ping(self) -> bool:
        return bool(self._api.ping())

    def _api_rootless(self) -> bool:
        return "name=rootless" in (self._api.info().get("SecurityOptions") or [])

    def _api_image_exists(self, image: str) -> bool:
        try:
            self._api.inspect_image(image)
        except NotFound:
            return False
        return True

    def _api_pull(self, image: str) -> None:
        api = self._api
        repository, tag = parse_repository_tag(image)
        registry, _name = auth.resolve_repository_name(repository)
        header = auth.get_config_header(api, registry)
        try:
            response = self._post(
                "/images/create", params={"fromImage": repository, "tag": tag or "latest"},
                headers={"X-Registry-Auth": header} if header else {}, stream=True,
                timeout=(self.api_timeout, self.pull_timeout))
        except docker.errors.APIError as e:  # refused at once: no such image, no registry
            raise StartError(f"pulling image {image} failed: {e.explanation or e}") from None
        with contextlib.closing(response):
            for line in response.iter_lines():
                with contextlib.suppress(ValueError):
                    item = json.loads(line)
                    if isinstance(item, dict) and item.get("error"):
                        raise StartError(f"pulling image {image} failed: {item['error']}")

    def _api_create(self, request: ContainerRequest) -> str:
        api = self._api
        host_config = api.create_host_config(
            mounts=[Mount(target=request.workdir, source=request.workdir, type="bind")],
            network_mode=request.network,
            init=self.init,
            log_config=LogConfig(type="local"),
            **request.limits,
        )
        created = api.create_container(
            image=request.image,
            command=request.argv or None,
            name=request.name,
            environment=request.env,
            working_dir=request.workdir,
            labels=request.labels,
            user=request.user or None,
            host_config=host_config,
            tty=False,
            stdin_open=False,
            use_config_proxy=False,
        )
        return str(created["Id"])

    def _api_start(self, cid: str) -> None:
        self._api.start(cid)

    def _api_inspect(self, cid: str) -> dict[str, Any]:
        return dict(self._api.inspect_container(cid))

    def _api_wait(self, cid: str) -> int:
        response = self._post("/containers/{0}/wait", cid, timeout=(self.api_timeout, None))
        return int(response.json()["StatusCode"])

    def _api_stop(self, cid: str, seconds: int) -> None:
        self._post("/containers/{0}/stop", cid, params={"t": seconds},
                   timeout=seconds + self.api_timeout)  # 204 stopped, 304 had stopped

    def _api_kill(self, cid: str) -> None:
        self._post("/containers/{0}/kill", cid, params={"signal": "SIGKILL"})

    def _api_delete(self, name: str) -> bool:
        try:
            self._api.remove_container(name, v=True, force=True)  # force: SIGKILL at once
        except NotFound:
            return False
        return True

    def _api_logs(self, cid: str, *, follow: bool) -> Any:
        api = self._api
        response = api._get(api._url("/containers/{0}/logs", cid),
                            params={"follow": follow, "stdout": True, "stderr": True},
                            stream=True,
                            timeout=(self.api_timeout, None) if follow else self.api_timeout)
        try:
            api._raise_for_status(response)
        except Exception:
            response.close()
            raise
        return response

    def _api_list_jobs(self) -> list[tuple[str, dict[str, str]]]:
        found = self._api.containers(all=True, filters={"label": [JOB_LABEL, OWNER_LABEL]})
        return [(c["Names"][0].lstrip("/"), c.get("Labels") or {})
                for c in found if c.get("Names")]
