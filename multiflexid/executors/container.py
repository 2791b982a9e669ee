"""What the container executors (Podman, Docker) share: one job is one container.

:class:`ContainerExecutor` runs the job; an engine subclass (``PodmanExecutor``,
``DockerExecutor``) only says how to talk to its API (the blocking ``_api_*`` methods).
For every job, whatever the engine:

- the container is ``multiflexi-job-<job_id>`` (a stale one of that name is removed
  first; the container is always removed afterwards), labelled with the job id and with
  the daemon process that made it (:func:`owner_label`);
- command ``spec.argv`` as an argv list (never a shell string); an empty argv runs the
  image's own command; environment ``spec.env`` and nothing of the daemon's;
- ``spec.workdir`` bind-mounted read-write at the same path and used as the working
  directory, so ``MULTIFLEXI_TMP`` and ``RESULT_FILE`` mean the same inside and outside
  (the engine must therefore run on this host);
- the container's user: when the job directory belongs to an ordinary user (the daemon
  runs as user multiflexi) and the engine is rootful, the job runs as that user and group
  (``HOME`` is the job directory unless the job's environment sets it), so whatever it
  writes there is the daemon's to read and to delete. A root daemon, or a rootless
  engine (whose root is the daemon's user already), keeps the image's user;
- limits: memory (swap included), cpus (CFS quota), pids; the network is ``none`` unless
  the run template names one;
- an init as PID 1, so that the polite stop's SIGTERM reaches the job;
- live output from one demultiplexed ``logs?follow`` stream (a log driver that keeps the
  two streams and the bytes exact). Once the container has exited, its whole log is read
  once more and what the stream did not deliver (it may end with the container before
  the last bytes, or break when the engine restarts) is delivered then;
- timeout and cancel: ``stop`` with ``spec.grace`` (SIGTERM, then SIGKILL), then a kill if
  it still runs. The outcome is decided here, not by the engine's own timeouts;
- an engine that cannot be reached is a ``failed_to_start`` result naming the URL and
  what to do; an engine lost while the job runs is a ``lost`` result (exit unknown).

Containers that could not be removed when their job ended (the API was away) are removed
by a janitor thread as soon as the API answers again; with ``sweep=True`` (the daemon's
executors) it also removes, once at start and then every ``sweep_interval`` seconds, job
containers whose daemon process is gone (it was killed mid-job), so neither they nor
their logs pile up in the engine's storage (:mod:`multiflexid.executors.janitor`). The
log stream is :mod:`multiflexid.executors.logstream`.

Blocking calls run in ``asyncio.to_thread`` behind a semaphore, each bounded by
``api_timeout``. The two long-lived calls of a running job (the log stream and ``wait``)
run in their own daemon threads so they never hold the default pool's few workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import math
import os
import pwd
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, Self, TypeVar
from urllib.parse import unquote, urlparse

from multiflexi.settings import Settings
from multiflexid.executors.base import (
    ExecResult,
    JobSpec,
    Limits,
    Outcome,
    OutputCallback,
    StartedCallback,
)
from multiflexid.executors.janitor import JOB_LABEL, OWNER_LABEL, Janitor, owner_label
from multiflexid.executors.logstream import LogStream, frames, in_thread, shielded

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
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


class StartError(Exception):
    """The job cannot start; the message is for the admin."""


@dataclass
class _Attempt:
    container: bool = False  # a container of the job's name may exist: remove it


@dataclass(frozen=True)
class ContainerRequest:
    """What to create, in engine-neutral terms (each engine turns it into its API call)."""

    name: str
    image: str
    argv: list[str]
    env: dict[str, str]
    workdir: str  # absolute; mounted at the same path and the working directory
    labels: dict[str, str]
    user: str | None  # "uid:gid", or None for the image's own user
    network: str
    limits: dict[str, Any]  # mem_limit, memswap_limit, cpu_period, cpu_quota, pids_limit


# -- the executor ----------------------------------------------------------------------------


class ContainerExecutor:
    """The Executor port on a container engine's API. Subclasses set the class attributes
    and implement the ``_api_*`` methods (blocking; they raise what their client raises)."""

    name: str  # the Executor port's name (an instance attribute there)
    engine: ClassVar[str]  # "Podman": in messages
    setting: ClassVar[str]  # the setting with its API URL: "podman_url"
    cli: ClassVar[str]  # "podman": in hints (`podman pull IMAGE`)
    service_hint: ClassVar[str]  # what to do when its socket does not answer
    # What the container's init says, and its exit code, when the job's program cannot
    # be executed.
    init_exec_failed: ClassVar[re.Pattern[bytes]]
    init_exec_exit: ClassVar[int]

    def __init__(
        self,
        base_url: str,
        *,
        pull: bool = False,
        api_timeout: float = 30.0,
        pull_timeout: float = 900.0,
        max_api_calls: int = 4,
        init: bool = True,
        drain_timeout: float = 5.0,
        reconnect_window: float = 10.0,
        retry_interval: float = 2.0,
        sweep: bool = False,
        sweep_interval: float = 300.0,
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
        self._config_error: str | None = None  # a URL the client refused: why
        self._client: Any = None  # the engine's client (made by the subclass), closed here
        self._owner = owner_label()
        self._rootless: bool | None = None  # learnt from the engine once
        self._janitor = Janitor(self, retry_interval=retry_interval, sweep=sweep,
                                sweep_interval=sweep_interval)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Self:
        """The daemon's executor: its URL from the settings; it sweeps unless told not to."""
        kwargs.setdefault("sweep", True)
        return cls(getattr(settings, cls.setting), **kwargs)

    def close(self) -> None:
        self._janitor.close()
        if self._client is not None:
            self._client.close()

    def _bad_url(self, exc: Exception) -> None:
        self._config_error = f"invalid {self.engine} API URL {self.base_url!r}: {exc}"

    async def check(self) -> str | None:
        """None if the API answers, else why not (for `status` and the daemon's log)."""
        if self._config_error:
            return self._config_error
        try:
            ok = await self._call(self._api_ping)
        except Exception as e:
            return self.describe(e)
        return None if ok else f"the {self.engine} API at {self.base_url} did not answer its ping"

    async def run(
        self,
        spec: JobSpec,
        output: OutputCallback,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        if self._config_error:
            return ExecResult("failed_to_start", message=self._config_error)
        name = container_name(spec.job_id)
        try:
            request = self._request(spec, name)
        except StartError as e:
            return ExecResult("failed_to_start", message=str(e))
        self._janitor.active.add(name)
        made = _Attempt()
        try:
            result = await self._create_and_run(request, spec, output, started, cancel, made)
        finally:
            removed = not made.container or await shielded(self._remove(name, spec.job_id))
            self._janitor.active.discard(name)
        if not removed:
            result = dataclasses.replace(result, message=_join(
                result.message,
                f"container {name} is removed once the {self.engine} API answers again"))
        return result

    async def _create_and_run(
        self, request: ContainerRequest, spec: JobSpec, output: OutputCallback,
        started: StartedCallback, cancel: asyncio.Event, made: _Attempt,
    ) -> ExecResult:
        name = request.name
        try:
            request = await self._call(self._prepare, request)
            made.container = True
            cid = await self._call(self._api_create, request)
        except StartError as e:
            return ExecResult("failed_to_start", message=str(e))
        except Exception as e:
            if _unreachable(e):
                # Not if the request only timed out: the container may exist then.
                made.container = made.container and any(_is_timeout(x) for x in _chain(e))
                return ExecResult("failed_to_start", message=self.describe(e))
            return ExecResult("failed_to_start", message=(
                f"{self.cli} refused to create container {name}: {self.describe(e)}"))
        if cancel.is_set():
            return ExecResult("cancelled", message="cancelled before the container started")
        try:
            await self._call(self._api_start, cid)
        except Exception as e:
            return ExecResult("failed_to_start", message=(
                f"{self.cli} could not start container {name}: {self.describe(e)}"))
        return await self._supervise(cid, spec, output, started, cancel)

    # -- steps --------------------------------------------------------------------------

    def _request(self, spec: JobSpec, name: str) -> ContainerRequest:
        if not spec.image:
            raise StartError("no container image: the application has no ociimage and "
                             "the run template sets none")
        workdir = os.path.abspath(spec.workdir)
        if not Path(workdir).is_dir():
            raise StartError(f"job directory {workdir} does not exist")
        network = (spec.limits.network or "none").strip()
        self._check_network(network)
        return ContainerRequest(
            name=name, image=spec.image, argv=list(spec.argv), env=dict(spec.env),
            workdir=workdir,
            labels={**spec.labels, JOB_LABEL: str(spec.job_id), OWNER_LABEL: self._owner},
            user=None, network=network, limits=limit_kwargs(spec.limits),
        )

    def _check_network(self, network: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][\w.:/-]*", network):
            raise StartError(f"unsupported network mode {network!r}")

    def _prepare(self, request: ContainerRequest) -> ContainerRequest:
        """Blocking: the image is there, no stale container has the name, the user is set."""
        if not self._api_image_exists(request.image):
            if not self.pull:
                raise StartError(f"image {request.image} not found in local storage "
                                 f"(pull it with `{self.cli} pull {request.image}`)")
            self._api_pull(request.image)
        if self._api_delete(request.name):
            log.warning("removed a stale container %s", request.name)
        owner = os.stat(request.workdir)
        if owner.st_uid == 0 or self._is_rootless():
            return request
        env = dict(request.env)
        env.setdefault("HOME", request.workdir)
        return dataclasses.replace(request, user=f"{owner.st_uid}:{owner.st_gid}", env=env)

    def _is_rootless(self) -> bool:
        if self._rootless is None:
            self._rootless = self._api_rootless()
        return self._rootless

    async def _supervise(
        self, cid: str, spec: JobSpec, output: OutputCallback, started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        stream = LogStream(self, cid, loop, output)
        stream.start()
        try:
            return await self._follow(cid, spec, stream, started, cancel)
        finally:
            stream.close()

    async def _follow(
        self, cid: str, spec: JobSpec, stream: LogStream, started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        name = container_name(spec.job_id)
        pid: int | None = None
        with contextlib.suppress(Exception):
            info = await self._call(self._api_inspect, cid)
            pid = int(info["State"]["Pid"]) or None
        started(pid)
        waiter = in_thread(loop, self._wait, cid, name=f"{self.name}-wait-{spec.job_id}")
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
            how = await self._stop(cid, spec.grace, waiter)
            message = (f"cancelled; {how}" if outcome == "cancelled"
                       else f"timed out after {spec.timeout:g} s; {how}")
        exitcode: int | None = None
        try:
            exitcode = await asyncio.wait_for(
                asyncio.shield(waiter), timeout=self.api_timeout + self.reconnect_window
            )
        except TimeoutError:
            message = _join(message, f"{self.engine} did not report the container's exit "
                                     "in time")
        except Exception as e:
            message = _join(message, f"lost track of container {name}: {self.describe(e)}; "
                                     "its exit code is unknown")
            if outcome == "exited":
                outcome = "lost"
        await stream.finish(self.drain_timeout)
        if exitcode is not None:
            try:
                complete = await in_thread(loop, self._catch_up, cid, stream,
                                            name=f"{self.name}-log-{spec.job_id}")
            except Exception as e:
                log.warning("output of job %s may be incomplete: %s", spec.job_id,
                            self.describe(e), extra={"MULTIFLEXI_JOB_ID": spec.job_id})
            else:
                if not complete:
                    message = _join(message, f"{self.engine}'s log stream skipped part of the "
                                             "output: what was kept may have gaps")
        failed = (self.init_exec_failed.match(stream.err_head)
                  if self.init and exitcode == self.init_exec_exit else None)
        if failed:  # the init ran, the job's program did not
            return ExecResult("failed_to_start", exitcode=exitcode, pid=pid, message=(
                f"{self.cli} could not start container {name}: cannot execute "
                f"{spec.argv[0] if spec.argv else 'the image command'}: "
                f"{failed.group(1).decode(errors='replace')}"))
        return ExecResult(outcome, exitcode=exitcode, pid=pid, message=message)

    def _wait(self, cid: str) -> int:
        """Blocking: the exit code; rides out a short loss of the API (a service restart)."""
        lost_since: float | None = None
        while True:
            try:
                return self._api_wait(cid)
            except Exception as e:
                if not _unreachable(e):
                    raise
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.reconnect_window:
                    raise
                time.sleep(0.5)

    async def _stop(self, cid: str, grace: float, waiter: asyncio.Future[int]) -> str:
        """SIGTERM, SIGKILL after ``grace`` seconds; says how the container ended."""
        seconds = max(0, math.ceil(grace))
        begin = time.monotonic()
        try:
            await self._call(self._api_stop, cid, seconds)
        except Exception as e:
            if _unreachable(e):
                return f"could not stop it: {self.describe(e)}"
            log.warning("stopping container %s failed: %s", cid[:12], self.describe(e))
        took = time.monotonic() - begin
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(waiter), timeout=2.0)
        if not waiter.done():
            try:
                await self._call(self._api_kill, cid)
            except Exception as e:
                return f"could not stop it: {self.describe(e)}"
            return f"killed: SIGTERM and {seconds} s grace did not stop it"
        if seconds and took >= seconds - 0.05:
            return f"stopped with SIGTERM, then SIGKILL after {seconds} s grace"
        return "stopped with SIGTERM"

    async def _remove(self, name: str, job_id: int) -> bool:
        try:
            await self._call(self._api_delete, name)
            return True
        except Exception as e:
            log.warning("could not remove container %s: %s; it is removed once the %s API "
                        "answers again", name, self.describe(e), self.engine,
                        extra={"MULTIFLEXI_JOB_ID": job_id})
            self._janitor.orphan(name, job_id)
            return False

    def _catch_up(self, cid: str, stream: LogStream) -> bool:
        """Blocking: deliver what the container's whole log has beyond what the stream
        sent; False if what it sent is not the log's beginning (it skipped some)."""
        response = self._api_logs(cid, follow=False)
        try:
            return stream.catch_up(frames(response.raw, threading.Event()))
        finally:
            response.close()

    # -- plumbing -----------------------------------------------------------------------

    async def _call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self._max_api_calls)
        async with sem:
            return await asyncio.to_thread(fn, *args, **kwargs)

    def describe(self, exc: BaseException) -> str:
        """An admin's explanation of what the engine's client raised."""
        if getattr(exc, "response", None) is not None:  # an HTTP answer: what it said
            return str(getattr(exc, "explanation", None) or exc)
        if not _unreachable(exc):
            return f"{type(exc).__name__}: {exc}"
        chain = _chain(exc)
        if any(_is_timeout(e) for e in chain):
            return (f"the {self.engine} API at {self.base_url} did not answer within "
                    f"{self.api_timeout:g} s")
        root = chain[-1]
        reason = os.strerror(root.errno) if isinstance(root, OSError) and root.errno else str(root)
        url = urlparse(self.base_url)
        if url.scheme in ("unix", "http+unix"):
            path = unquote(url.netloc + url.path)
            if isinstance(root, OSError) and root.errno in (errno.EACCES, errno.EPERM):
                # (the socket, or its directory: then it also looks as if it did not exist)
                reason += (f" (user {_user_name()} may not use {path}: see \"{self.engine} "
                           "jobs\" in /usr/share/doc/multiflexi/README.md)")
            else:
                if not os.path.exists(path):
                    reason = f"socket {path} does not exist"
                reason += f" (is the {self.engine} service running? `{self.service_hint}`)"
        return f"cannot reach the {self.engine} API at {self.base_url}: {reason}"

    # -- what an engine implements (blocking) -------------------------------------------

    def _api_ping(self) -> bool:
        raise NotImplementedError

    def _api_rootless(self) -> bool:
        raise NotImplementedError

    def _api_image_exists(self, image: str) -> bool:
        raise NotImplementedError

    def _api_pull(self, image: str) -> None:
        """Pull ``image``; a failure is a :class:`StartError` saying why."""
        raise NotImplementedError

    def _api_create(self, request: ContainerRequest) -> str:
        """Create the container; its id."""
        raise NotImplementedError

    def _api_start(self, cid: str) -> None:
        raise NotImplementedError

    def _api_inspect(self, cid: str) -> dict[str, Any]:
        """The container's inspect document (``State.Pid``, ``State.Running``...)."""
        raise NotImplementedError

    def _api_wait(self, cid: str) -> int:
        """One wait request: the exit code once the container has exited."""
        raise NotImplementedError

    def _api_stop(self, cid: str, seconds: int) -> None:
        raise NotImplementedError

    def _api_kill(self, cid: str) -> None:
        raise NotImplementedError

    def _api_delete(self, name: str) -> bool:
        """Remove a container at once (killed if running); False if there was none."""
        raise NotImplementedError

    def _api_logs(self, cid: str, *, follow: bool) -> Any:
        """The multiplexed log as an HTTP response checked for errors (``.raw``, ``.close()``);
        ``follow``: until the container exits, with no read timeout."""
        raise NotImplementedError

    def _api_list_jobs(self) -> list[tuple[str, dict[str, str]]]:
        """(name, labels) of every container (any state) with an owner label."""
        raise NotImplementedError


def limit_kwargs(limits: Limits) -> dict[str, Any]:
    """The limits as create arguments both podman-py and the Docker SDK take."""
    out: dict[str, Any] = {}
    if limits.memory:
        try:
            out["mem_limit"] = out["memswap_limit"] = parse_memory(limits.memory)
        except ValueError as e:
            raise StartError(str(e)) from None
    if limits.cpus is not None:
        if limits.cpus <= 0:
            raise StartError(f"invalid CPU limit {limits.cpus!r} (must be more than 0)")
        out["cpu_period"] = 100_000
        out["cpu_quota"] = max(1000, round(limits.cpus * 100_000))
    if limits.pids is not None:
        if limits.pids <= 0:
            raise StartError(f"invalid pids limit {limits.pids!r} (must be more than 0)")
        out["pids_limit"] = limits.pids
    return out


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
    if getattr(exc, "response", None) is not None:
        return False
    return any((isinstance(e, OSError) and getattr(e, "response", None) is None)
               or _is_timeout(e) or type(e).__name__ in ("ConnectionError", "ProtocolError")
               for e in _chain(exc))


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"
