"""PodmanExecutor: runs a job in a container through the Podman API (podman-py).

What every container job gets is in :mod:`multiflexid.executors.container`. Podman's part:

- the image must be in local storage unless ``pull=True``;
- Podman adds ``container``, ``HOSTNAME``, ``HOME``, ``TERM`` and the image's ``PATH`` to
  the environment unless ``spec.env`` sets them; the service's proxy variables are not
  copied in;
- network ``spec.limits.network``: a mode (``bridge``, ``slirp4netns``, ``host``,
  ``ns:/path``...) or the name of a Podman network;
- ``catatonit`` is the init (``init=True``); the log driver is ``k8s-file``, which keeps
  stdout and stderr apart and the bytes exact. Its file is only a transport (the job's
  output is capped and stored by the daemon), limited to ``log_max_bytes``: by default
  LOG_FACTOR times the output cap — the most a capped output can take in its format (a
  timestamp and the stream on every line: 46 bytes for an empty one), so no output under
  the cap is lost, while a job flooding past it cannot fill Podman's storage (conmon
  starts the file anew at the limit; what a follower had not read then is lost, which
  can only be output over the cap). The file goes with the container;
- the libpod endpoints (``/containers/{id}/wait`` answers the exit code itself; ``stop``
  takes ``timeout``; ``DELETE`` with ``timeout=0`` kills at once).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any, Self

from podman import PodmanClient

from multiflexi.settings import DEFAULT_PODMAN_URL, Settings
from multiflexid.executors.container import (
    JOB_LABEL,
    OWNER_LABEL,
    ContainerExecutor,
    ContainerRequest,
    StartError,
    container_name,
    parse_memory,
)

__all__ = ["NETWORK_MODES", "PodmanExecutor", "container_name", "parse_memory"]

# Network modes Podman knows as such; any other value names a Podman network.
NETWORK_MODES = frozenset({"none", "host", "bridge", "private", "slirp4netns", "pasta"})
# k8s-file writes "<timestamp> <stream> <F|P> <data>\n" per line or partial read: at most
# 47 bytes of log per byte of output.
LOG_FACTOR = 48


class PodmanExecutor(ContainerExecutor):
    """The Executor port on the Podman API: ``PodmanExecutor(settings.podman_url)``."""

    name = "podman"
    engine = "Podman"
    setting = "podman_url"
    cli = "podman"
    service_hint = "systemctl enable --now podman.socket"
    init_exec_failed = re.compile(rb"^ERROR \(catatonit:\d+\): failed to exec pid1: ([^\n]*)\n")
    init_exec_exit = 1

    def __init__(self, base_url: str = DEFAULT_PODMAN_URL, *,
                 log_max_bytes: int | None = None, **kwargs: Any) -> None:
        """``log_max_bytes``: the limit of a container's log file (None: none)."""
        super().__init__(base_url, **kwargs)
        self.log_max_bytes = log_max_bytes
        try:
            self._client = PodmanClient(base_url=base_url, timeout=self.api_timeout,
                                        max_pool_size=64)
        except Exception as e:  # e.g. an unsupported URL scheme
            self._bad_url(e)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        if settings.output_cap_bytes > 0:
            kwargs.setdefault("log_max_bytes", settings.output_cap_bytes * LOG_FACTOR)
        return super().from_settings(settings, **kwargs)

    @property
    def _api(self) -> Any:
        assert self._client is not None  # run() and check() stop at a config error first
        return self._client.api

    def _check_network(self, network: str) -> None:
        if network in NETWORK_MODES or network.startswith("ns:"):
            return
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", network):
            raise StartError(f"unsupported network mode {network!r}")

    # -- the API ------------------------------------------------------------------------

    def _api_ping(self) -> bool:
        assert self._client is not None
        return bool(self._client.ping())

    def _api_rootless(self) -> bool:
        response = self._api.get("/info")
        response.raise_for_status()
        return bool(response.json()["host"]["security"]["rootless"])

    def _api_image_exists(self, image: str) -> bool:
        assert self._client is not None
        return bool(self._client.images.exists(image))

    def _api_pull(self, image: str) -> None:
        # The libpod endpoint answers 200 and reports a failed pull as an "error" line.
        response = self._api.post(
            "/images/pull",
            params={"reference": image, "policy": "missing", "compatMode": False},
            timeout=(self.api_timeout, self.pull_timeout),
        )
        response.raise_for_status()
        for line in response.text.splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict) and item.get("error"):
                    raise StartError(f"pulling image {image} failed: {item['error']}")

    def _api_create(self, request: ContainerRequest) -> str:
        assert self._client is not None
        network: dict[str, Any] = (
            {"network_mode": request.network}
            if request.network in NETWORK_MODES or request.network.startswith("ns:")
            else {"networks": {request.network: {}}})
        container = self._client.containers.create(
            image=request.image,
            command=request.argv or None,
            name=request.name,
            environment=request.env,
            use_config_proxy=False,
            working_dir=request.workdir,
            mounts=[{"type": "bind", "source": request.workdir, "target": request.workdir}],
            labels=request.labels,
            log_config={"Type": "k8s-file", **(
                {"Config": {"size": self.log_max_bytes}} if self.log_max_bytes else {})},
            init=self.init,
            tty=False,
            stdin_open=False,
            **({"user": request.user} if request.user else {}),
            **network,
            **request.limits,
        )
        return str(container.id)

    def _api_start(self, cid: str) -> None:
        self._api.post(f"/containers/{cid}/start").raise_for_status()

    def _api_inspect(self, cid: str) -> dict[str, Any]:
        response = self._api.get(f"/containers/{cid}/json")
        response.raise_for_status()
        return dict(response.json())

    def _api_wait(self, cid: str) -> int:
        response = self._api.post(f"/containers/{cid}/wait", timeout=(self.api_timeout, None))
        response.raise_for_status()
        return int(response.json())

    def _api_stop(self, cid: str, seconds: int) -> None:
        response = self._api.post(f"/containers/{cid}/stop", params={"timeout": seconds},
                                  timeout=seconds + self.api_timeout)
        response.raise_for_status()  # 204 stopped, 304 had stopped already

    def _api_kill(self, cid: str) -> None:
        self._api.post(f"/containers/{cid}/kill", params={"signal": "SIGKILL"}
                       ).raise_for_status()

    def _api_delete(self, name: str) -> bool:
        response = self._api.delete(  # timeout=0: don't wait 10 s before the kill
            f"/containers/{name}", params={"force": True, "volumes": True, "timeout": 0}
        )
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def _api_logs(self, cid: str, *, follow: bool) -> Any:
        response = self._api.get(
            f"/containers/{cid}/logs",
            params={"follow": follow, "stdout": True, "stderr": True}, stream=True,
            timeout=(self.api_timeout, None) if follow else self.api_timeout,
        )
        try:
            response.raise_for_status()
        except Exception:
            response.close()
            raise
        return response

    def _api_list_jobs(self) -> list[tuple[str, dict[str, str]]]:
        response = self._api.get("/containers/json", params={
            "all": True, "filters": json.dumps({"label": [JOB_LABEL, OWNER_LABEL]})})
        response.raise_for_status()
        return [(c["Names"][0], c.get("Labels") or {}) for c in response.json() if c.get("Names")]
