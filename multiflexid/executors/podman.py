"""PodmanExecutor: runs a job in a container through the Podman API (podman-py).

One job is one container, ``multiflexi-job-<job_id>`` (a stale one of that name is removed
first; the container is always removed afterwards):

- image ``spec.image``, which must be in local storage unless ``pull=True``;
- command ``spec.argv`` as an argv list (never a shell string); an empty argv runs the
  image's own command; the image's ENTRYPOINT, if it has one, is kept;
- environment ``spec.env`` and nothing of the daemon's. Podman adds ``container``,
  ``HOSTNAME``, ``HOME``, ``TERM`` and the image's ``PATH`` unless ``spec.env`` sets them;
  the service's proxy variables are not copied in;
- ``spec.workdir`` bind-mounted read-write at the same path and used as the working
  directory, so ``MULTIFLEXI_TMP`` and ``RESULT_FILE`` mean the same inside and outside.
  (The Podman service must therefore run on this host.);
- limits: memory (swap included, so the job cannot swap past it), cpus (CFS quota),
  pids; network ``spec.limits.network`` — a mode (``bridge``, ``slirp4netns``, ``host``,
  ``ns:/path``...) or the name of a Podman network — and ``none`` when it is not set;
- ``catatonit`` as PID 1 (``init=True``), so that the polite stop's SIGTERM reaches the
  job: a program that is itself PID 1 ignores SIGTERM unless it handles it;
- live output from one demultiplexed ``logs?follow`` stream; the log driver is forced to
  ``k8s-file``, which keeps stdout and stderr apart and the bytes exact. If the stream
  breaks (the service restarted) the rest is fetched once the container has exited;
- timeout and cancel: ``stop`` with ``spec.grace`` (SIGTERM, then SIGKILL), then a kill if
  it still runs. The outcome is decided here: Podman's own ``--timeout`` exits 255.

Blocking calls run in ``asyncio.to_thread`` behind a semaphore, each bounded by
``api_timeout``. The two long-lived calls of a running job (the log stream and ``wait``)
run in their own daemon threads so they never hold the default pool's few workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import pwd
import re
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import unquote, urlparse

from podman import PodmanClient
from podman.errors import APIError

from multiflexi.settings import DEFAULT_PODMAN_URL, Settings
from multiflexid.executors.base import (
    ExecResult,
    JobSpec,
    Limits,
    Outcome,
    OutputCallback,
    StartedCallback,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

JOB_LABEL = "multiflexi.job_id"
# Network modes Podman knows as such; any other value names a Podman network.
NETWORK_MODES = frozenset({"none", "host", "bridge", "private", "slirp4netns", "pasta"})
_STREAMS = {1: "stdout", 2: "stderr"}
_FRAME = struct.Struct(">BxxxL")  # the header of each stdout/stderr frame
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
# What catatonit (the container's init) says when the job's program cannot be executed.
_INIT_EXEC_FAILED = re.compile(rb"^ERROR \(catatonit:\d+\): failed to exec pid1: ([^\n]*)\n")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def container_name(job_id: int) -> str:
    return f"multiflexi-job-{job_id}"


def parse_memory(value: str) -> int:
    """``"512m"`` -> bytes (binary units b/k/m/g/t, optionally followed by ``b``/``ib``)."""
    m = _SIZE.match(value)
    size = int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else 0
    if size <= 0:
        raise ValueError(f"invalid memory limit {value!r} (use e.g. 512m or 2g)")
    return size


class _StartError(Exception):
    """The job cannot start; the message is for the admin."""


class PodmanExecutor:
    """The Executor port on the Podman API: ``PodmanExecutor(settings.podman_url)``."""

    name = "podman"

    def __init__(
        self,
        base_url: str = DEFAULT_PODMAN_URL,
        *,
        pull: bool = False,
        api_timeout: float = 30.0,
        pull_timeout: float = 900.0,
        max_api_calls: int = 4,
        init: bool = True,
        drain_timeout: float = 5.0,
        reconnect_window: float = 10.0,
    ) -> None:
        self.base_url = base_url
        self.pull = pull
        self.api_timeout = api_timeout
        self.pull_timeout = pull_timeout
        self.init = init
        self.drain_timeout = drain_timeout  # for the log stream to end after the exit
        self.reconnect_window = reconnect_window  # how long `wait` rides out a lost API
        self._max_api_calls = max_api_calls
        self._semaphores: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, asyncio.Semaphore
        ] = weakref.WeakKeyDictionary()
        self._client: PodmanClient | None = None
        self._config_error: str | None = None
        try:
            self._client = PodmanClient(base_url=base_url, timeout=api_timeout,
                                        max_pool_size=64)
        except Exception as e:  # e.g. an unsupported URL scheme
            self._config_error = f"invalid Podman API URL {base_url!r}: {e}"

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> PodmanExecutor:
        return cls(settings.podman_url, **kwargs)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def check(self) -> str | None:
        """None if the Podman API answers, else why not (for the daemon's start-up log)."""
        if self._client is None:
            return self._config_error
        try:
            ok = await self._call(self._client.ping)
        except Exception as e:
            return self.describe(e)
        return None if ok else f"the Podman API at {self.base_url} did not answer its ping"

    async def run(
        self,
        spec: JobSpec,
        output: OutputCallback,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        if self._client is None:
            return ExecResult("failed_to_start", message=self._config_error)
        client = self._client
        name = container_name(spec.job_id)
        try:
            kwargs = self._create_kwargs(spec, name)
        except _StartError as e:
            return ExecResult("failed_to_start", message=str(e))
        created = False  # True once a container of this name may exist
        try:
            try:
                await self._call(self._prepare, client, spec.image or "", name)
                created = True
                container = await self._call(client.containers.create, **kwargs)
            except _StartError as e:
                return ExecResult("failed_to_start", message=str(e))
            except Exception as e:
                if _unreachable(e):
                    # Not if the request only timed out: the container may exist then.
                    created = created and any(_is_timeout(x) for x in _chain(e))
                    return ExecResult("failed_to_start", message=self.describe(e))
                return ExecResult(
                    "failed_to_start",
                    message=f"podman refused to create container {name}: {self.describe(e)}",
                )
            if cancel.is_set():
                return ExecResult("cancelled", message="cancelled before the container started")
            try:
                await self._call(container.start)
            except Exception as e:
                return ExecResult(
                    "failed_to_start",
                    message=f"podman could not start container {name}: {self.describe(e)}",
                )
            return await self._supervise(client, container.id, spec, output, started, cancel)
        finally:
            if created:
                await _shielded(self._remove(client, name, spec.job_id))

    # -- steps --------------------------------------------------------------------------

    def _create_kwargs(self, spec: JobSpec, name: str) -> dict[str, Any]:
        if not spec.image:
            raise _StartError("no container image: the application has no ociimage and "
                              "the run template sets none")
        workdir = os.path.abspath(spec.workdir)
        if not Path(workdir).is_dir():
            raise _StartError(f"job directory {workdir} does not exist")
        return {
            "image": spec.image,
            "command": list(spec.argv) or None,
            "name": name,
            "environment": dict(spec.env),
            "use_config_proxy": False,
            "working_dir": workdir,
            "mounts": [{"type": "bind", "source": workdir, "target": workdir}],
            "labels": {**spec.labels, JOB_LABEL: str(spec.job_id)},
            "log_config": {"Type": "k8s-file"},
            "init": self.init,
            "tty": False,
            "stdin_open": False,
            **_limit_kwargs(spec.limits),
        }

    def _prepare(self, client: PodmanClient, image: str, name: str) -> None:
        """Blocking: make sure the image is there and no stale container has the name."""
        if not client.images.exists(image):
            if not self.pull:
                raise _StartError(f"image {image} not found in local storage "
                                  f"(pull it with `podman pull {image}`)")
            self._pull(client, image)
        if self._delete(client, name):
            log.warning("removed a stale container %s", name)

    def _pull(self, client: PodmanClient, image: str) -> None:
        # The libpod endpoint answers 200 and reports a failed pull as an "error" line.
        response = client.api.post(
            "/images/pull",
            params={"reference": image, "policy": "missing", "compatMode": False},
            timeout=(self.api_timeout, self.pull_timeout),
        )
        response.raise_for_status()
        for line in response.text.splitlines():
            with contextlib.suppress(ValueError):
                item = json.loads(line)
                if isinstance(item, dict) and item.get("error"):
                    raise _StartError(f"pulling image {image} failed: {item['error']}")

    @staticmethod
    def _delete(client: PodmanClient, name: str) -> bool:
        """Blocking: remove a container at once (killed if running); False if none was."""
        response = client.api.delete(  # timeout=0: don't wait 10 s before the kill
            f"/containers/{name}", params={"force": True, "volumes": True, "timeout": 0}
        )
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    async def _supervise(
        self,
        client: PodmanClient,
        cid: str,
        spec: JobSpec,
        output: OutputCallback,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        stream = _LogStream(client, cid, loop, output, self.api_timeout)
        stream.start()
        try:
            return await self._follow(client, cid, spec, stream, started, cancel)
        finally:
            stream.close()

    async def _follow(
        self,
        client: PodmanClient,
        cid: str,
        spec: JobSpec,
        stream: _LogStream,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        pid: int | None = None
        with contextlib.suppress(Exception):
            info = await self._call(client.containers.get, cid)
            pid = int(info.attrs["State"]["Pid"]) or None
        started(pid)
        waiter = _in_thread(loop, self._wait, client, cid, name=f"podman-wait-{spec.job_id}")
        cancelled = asyncio.ensure_future(cancel.wait())
        watched: set[asyncio.Future[Any]] = {waiter, cancelled}
        try:
            await asyncio.wait(watched, timeout=spec.timeout or None,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
        outcome: Outcome = "exited"
        message: str | None = None
        if not waiter.done():
            outcome = "cancelled" if cancel.is_set() else "timed_out"
            how = await self._stop(client, cid, spec.grace, waiter)
            message = (f"cancelled; {how}" if outcome == "cancelled"
                       else f"timed out after {spec.timeout:g} s; {how}")
        exitcode: int | None = None
        try:
            exitcode = await asyncio.wait_for(
                asyncio.shield(waiter), timeout=self.api_timeout + self.reconnect_window
            )
        except TimeoutError:
            message = _join(message, "Podman did not report the container's exit in time")
        except Exception as e:
            message = _join(message, f"lost track of container {container_name(spec.job_id)}: "
                                     f"{self.describe(e)}")
        await stream.finish(self.drain_timeout)
        if stream.broken and exitcode is not None:
            try:
                stream.catch_up(await self._call(_fetch_log, client, cid))
            except Exception as e:
                log.warning("output of job %s may be incomplete: %s", spec.job_id,
                            self.describe(e), extra={"MULTIFLEXI_JOB_ID": spec.job_id})
        failed = _INIT_EXEC_FAILED.match(stream.err_head) if self.init and exitcode == 1 else None
        if failed:  # catatonit ran, the job's program did not
            return ExecResult("failed_to_start", exitcode=exitcode, pid=pid, message=(
                f"podman could not start container {container_name(spec.job_id)}: cannot "
                f"execute {spec.argv[0] if spec.argv else 'the image command'}: "
                f"{failed.group(1).decode(errors='replace')}"))
        return ExecResult(outcome, exitcode=exitcode, pid=pid, message=message)

    def _wait(self, client: PodmanClient, cid: str) -> int:
        """Blocking: the exit code; rides out a short loss of the API (a service restart)."""
        lost_since: float | None = None
        while True:
            try:
                response = client.api.post(f"/containers/{cid}/wait",
                                           timeout=(self.api_timeout, None))
                response.raise_for_status()
                return int(response.json())
            except Exception as e:
                if not _unreachable(e):
                    raise
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.reconnect_window:
                    raise
                time.sleep(0.5)

    async def _stop(
        self, client: PodmanClient, cid: str, grace: float, waiter: asyncio.Future[int]
    ) -> str:
        """SIGTERM, SIGKILL after ``grace`` seconds; says how the container ended."""
        seconds = max(0, math.ceil(grace))
        begin = time.monotonic()
        try:
            response = await self._call(client.api.post, f"/containers/{cid}/stop",
                                        params={"timeout": seconds},
                                        timeout=seconds + self.api_timeout)
            response.raise_for_status()  # 204 stopped, 304 had stopped already
        except Exception as e:
            if _unreachable(e):
                return f"could not stop it: {self.describe(e)}"
            log.warning("stopping container %s failed: %s", cid[:12], self.describe(e))
        took = time.monotonic() - begin
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout=2.0)
        if not waiter.done():
            try:
                response = await self._call(client.api.post, f"/containers/{cid}/kill",
                                            params={"signal": "SIGKILL"})
                response.raise_for_status()
            except Exception as e:
                return f"could not stop it: {self.describe(e)}"
            return f"killed: SIGTERM and {seconds} s grace did not stop it"
        if seconds and took >= seconds - 0.05:
            return f"stopped with SIGTERM, then SIGKILL after {seconds} s grace"
        return "stopped with SIGTERM"

    async def _remove(self, client: PodmanClient, name: str, job_id: int) -> None:
        try:
            await self._call(self._delete, client, name)
        except Exception as e:
            log.warning("could not remove container %s: %s (remove it with `podman rm -f %s`)",
                        name, self.describe(e), name, extra={"MULTIFLEXI_JOB_ID": job_id})

    # -- plumbing -----------------------------------------------------------------------

    async def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self._max_api_calls)
        async with sem:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def describe(self, exc: BaseException) -> str:
        """An admin's explanation of what podman-py raised."""
        if isinstance(exc, APIError) and exc.response is not None:
            return str(exc.explanation or exc)
        if not _unreachable(exc):
            return f"{type(exc).__name__}: {exc}"
        chain = _chain(exc)
        if any(_is_timeout(e) for e in chain):
            return f"the Podman API at {self.base_url} did not answer within {self.api_timeout:g} s"
        root = chain[-1]
        reason = os.strerror(root.errno) if isinstance(root, OSError) and root.errno else str(root)
        url = urlparse(self.base_url)
        if url.scheme in ("unix", "http+unix"):
            path = unquote(url.netloc + url.path)
            if isinstance(root, OSError) and root.errno in (errno.EACCES, errno.EPERM):
                # (the socket, or its directory: then it also looks as if it did not exist)
                reason += (f" (user {_user_name()} may not use {path}: see \"Podman jobs\" "
                           "in /usr/share/doc/multiflexi/README.md)")
            else:
                if not os.path.exists(path):
                    reason = f"socket {path} does not exist"
                reason += (" (is the Podman service running? "
                           "`systemctl enable --now podman.socket`)")
        return f"cannot reach the Podman API at {self.base_url}: {reason}"


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _limit_kwargs(limits: Limits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    network = (limits.network or "none").strip()
    if network in NETWORK_MODES or network.startswith("ns:"):
        out["network_mode"] = network
    elif re.fullmatch(r"[A-Za-z0-9][\w.-]*", network):
        out["networks"] = {network: {}}
    else:
        raise _StartError(f"unsupported network mode {network!r}")
    if limits.memory:
        try:
            out["mem_limit"] = out["memswap_limit"] = parse_memory(limits.memory)
        except ValueError as e:
            raise _StartError(str(e)) from None
    if limits.cpus is not None:
        if limits.cpus <= 0:
            raise _StartError(f"invalid CPU limit {limits.cpus!r} (must be more than 0)")
        out["cpu_period"] = 100_000
        out["cpu_quota"] = max(1000, round(limits.cpus * 100_000))
    if limits.pids is not None:
        if limits.pids <= 0:
            raise _StartError(f"invalid pids limit {limits.pids!r} (must be more than 0)")
        out["pids_limit"] = limits.pids
    return out


def _fetch_log(client: PodmanClient, cid: str) -> list[tuple[str, bytes]]:
    """Blocking: the container's whole log so far, as (stream, bytes) frames."""
    response = client.api.get(f"/containers/{cid}/logs",
                              params={"stdout": True, "stderr": True}, stream=True)
    try:
        response.raise_for_status()
        return [(s, d) for s, d in _frames(response.raw, threading.Event()) if s]
    finally:
        response.close()


def _frames(raw: Any, aborted: threading.Event) -> Iterator[tuple[str | None, bytes]]:
    """Yields (stream or None, bytes) from a multiplexed log response until its end."""
    while not aborted.is_set():
        header = _read_exactly(raw, _FRAME.size)
        if len(header) < _FRAME.size:
            return
        kind, size = _FRAME.unpack(header)
        yield _STREAMS.get(kind), _read_exactly(raw, size)


def _read_exactly(raw: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0 and (chunk := raw.read(size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _LogStream:
    """Follows ``/containers/{id}/logs`` in its own thread; hands each frame to ``output``
    on the event loop's thread. The stream ends by itself once the container has exited;
    :meth:`finish` waits for that and cuts the connection if it does not come in time."""

    def __init__(self, client: PodmanClient, cid: str, loop: asyncio.AbstractEventLoop,
                 output: OutputCallback, connect_timeout: float) -> None:
        self._client = client
        self._cid = cid
        self._loop = loop
        self._output = output
        self._connect_timeout = connect_timeout
        self._response: Any = None
        self._closed = False  # on the loop thread: deliver nothing more
        self._aborted = threading.Event()
        self._done: asyncio.Future[None] = loop.create_future()
        self.sent = {"stdout": 0, "stderr": 0}  # bytes handed to the loop, per stream
        self.broken = False  # ended before the container did: the log may have more
        self.err_head = b""  # the first bytes of stderr

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"podman-logs-{self._cid[:12]}",
                         daemon=True).start()

    def _deliver(self, stream: str, data: bytes) -> None:
        if not self._closed:
            self._output(stream, data)

    def _run(self) -> None:
        try:
            response = self._client.api.get(
                f"/containers/{self._cid}/logs",
                params={"follow": True, "stdout": True, "stderr": True},
                stream=True, timeout=(self._connect_timeout, None),
            )
            self._response = response
            try:
                response.raise_for_status()
                for stream, data in _frames(response.raw, self._aborted):
                    if stream is None:
                        log.warning("podman log stream of %s: %r", self._cid[:12], data[:300])
                    elif data:
                        if stream == "stderr" and len(self.err_head) < 512:
                            self.err_head += data[: 512 - len(self.err_head)]
                        self.sent[stream] += len(data)
                        self._loop.call_soon_threadsafe(self._deliver, stream, data)
            finally:
                response.close()
            if not self._aborted.is_set():
                state = self._client.containers.get(self._cid).attrs["State"]
                self.broken = bool(state.get("Running")) or state.get("Status") == "running"
        except Exception as e:
            if not self._aborted.is_set():
                self.broken = True
                log.warning("log stream of container %s broke: %r", self._cid[:12], e)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                self._loop.call_soon_threadsafe(_resolve, self._done)

    def _abort(self) -> None:
        self._aborted.set()
        with contextlib.suppress(Exception):
            self._response.raw.connection.sock.shutdown(socket.SHUT_RDWR)

    async def finish(self, within: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._done), within)
        except TimeoutError:
            log.warning("log stream of container %s did not end; cut it", self._cid[:12])
            self.broken = True
            self._abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done), 1.0)

    def catch_up(self, frames: list[tuple[str, bytes]]) -> None:
        """Deliver what the complete log has beyond what the stream already sent."""
        skip = dict(self.sent)
        for stream, data in frames:
            cut = min(skip[stream], len(data))
            skip[stream] -= cut
            if data[cut:]:
                self.sent[stream] += len(data) - cut
                self._deliver(stream, data[cut:])

    def close(self) -> None:
        self._closed = True
        self._aborted.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _in_thread(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any, name: str
) -> asyncio.Future[T]:
    """Run a long blocking call in its own daemon thread; its outcome as a future."""
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except BaseException as e:
            outcome = (False, e)
        with contextlib.suppress(RuntimeError):  # the loop is gone
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    # After a give-up nobody awaits it: don't warn about an exception never retrieved.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


async def _shielded(coro: Any) -> None:
    """Finish ``coro`` even if the caller is cancelled meanwhile (cleanup must happen)."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), 60)
        raise


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _unreachable(exc: BaseException) -> bool:
    """The request got no HTTP answer: no socket, refused, reset, timed out."""
    if isinstance(exc, APIError) and exc.response is not None:
        return False
    return any((isinstance(e, OSError) and not isinstance(e, APIError)) or _is_timeout(e)
               or type(e).__name__ in ("ConnectionError", "ProtocolError")
               for e in _chain(exc))


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second
