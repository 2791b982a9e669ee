"""NativeExecutor: the job is a child process (argv, no shell) in its own process group.

The child's pipes are read by a subprocess *protocol*: each chunk goes to the output
callback as it arrives, with no reader tasks and no stream buffers in between (one job
costs a handful of event-loop callbacks).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from typing import Any

from .base import ExecResult, JobSpec, Outcome, OutputCallback, StartedCallback

# After the job's main process exits, how long its pipes may stay open (a background
# child still holding them) before the rest of its process group is killed.
LINGER_SECONDS = 2.0
_STREAMS = {1: "stdout", 2: "stderr"}


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _JobProtocol(asyncio.SubprocessProtocol):
    def __init__(self, output: OutputCallback, flow: asyncio.Event | None) -> None:
        loop = asyncio.get_running_loop()
        self.output = output
        self.flow = flow
        self.exited: asyncio.Future[None] = loop.create_future()
        self.drained: asyncio.Future[None] = loop.create_future()
        self._open = 2  # stdout and stderr
        self._transport: asyncio.SubprocessTransport | None = None
        self._resumer: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.output(_STREAMS.get(fd, "stdout"), data)
        if self.flow is not None and not self.flow.is_set() and self._resumer is None:
            self._pipes("pause_reading")
            self._resumer = asyncio.ensure_future(self._resume_when_flowing())

    async def _resume_when_flowing(self) -> None:
        assert self.flow is not None
        await self.flow.wait()
        self._resumer = None
        self._pipes("resume_reading")

    def _pipes(self, action: str) -> None:
        if self._transport is None:
            return
        for fd in _STREAMS:
            pipe = self._transport.get_pipe_transport(fd)
            if pipe is not None and not pipe.is_closing():
                getattr(pipe, action)()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd in _STREAMS:
            self._open -= 1
            if self._open == 0 and not self.drained.done():
                self.drained.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


class NativeExecutor:
    name = "Native"

    def __init__(self) -> None:
        # Where each (program, PATH) was found; a program that moved is looked up again.
        self._which: dict[tuple[str, str], str | None] = {}

    def _resolve(self, exe: str, path: str, fresh: bool = False) -> str | None:
        if "/" in exe:
            return exe
        key = (exe, path)
        if fresh or key not in self._which:
            self._which[key] = shutil.which(exe, path=path)
        return self._which[key]

    async def run(
        self,
        spec: JobSpec,
        output: OutputCallback,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        loop = asyncio.get_running_loop()
        exe = spec.argv[0]
        path = spec.env.get("PATH", os.defpath)
        transport: asyncio.SubprocessTransport | None = None
        protocol: _JobProtocol | None = None
        for fresh in (False, True):
            resolved = self._resolve(exe, path, fresh)
            if resolved is None:
                return ExecResult("failed_to_start", message=f"executable {exe!r} not found "
                                                             f"in PATH={path}")
            try:
                transport, protocol = await loop.subprocess_exec(
                    lambda: _JobProtocol(output, spec.flow),
                    resolved, *spec.argv[1:],
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=spec.workdir,
                    env=spec.env,
                    start_new_session=True,  # own session and process group: stop them all
                )
                break
            except FileNotFoundError as exc:
                if fresh or "/" in exe:
                    return ExecResult("failed_to_start",
                                      message=f"cannot start {resolved}: {exc.strerror}")
            except OSError as exc:
                return ExecResult("failed_to_start",
                                  message=f"cannot start {resolved}: {exc.strerror or exc}")
        assert transport is not None and protocol is not None
        pid = transport.get_pid()
        started(pid)
        try:
            outcome = await self._supervise(protocol, pid, spec, cancel)
            # The main process is gone; let the pipes drain, then stop stragglers.
            if not protocol.drained.done():
                try:
                    await asyncio.wait_for(asyncio.shield(protocol.drained), LINGER_SECONDS)
                except TimeoutError:
                    _killpg(pid, signal.SIGKILL)
            code = transport.get_returncode()
        finally:
            transport.close()
        message = None
        if code is not None and code < 0:
            message = f"killed by signal {signal.Signals(-code).name}"
            code = 128 - code
        if outcome == "timed_out":
            message = f"timed out after {spec.timeout:g} s; " + (message or "stopped")
        elif outcome == "cancelled":
            message = "cancelled; " + (message or "stopped")
        return ExecResult(outcome, exitcode=code, pid=pid, message=message)

    async def _supervise(
        self, protocol: _JobProtocol, pid: int, spec: JobSpec, cancel: asyncio.Event
    ) -> Outcome:
        exited = protocol.exited
        canceller = asyncio.ensure_future(cancel.wait())
        waiting: set[asyncio.Future[Any]] = {exited, canceller}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=spec.timeout or None, return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            canceller.cancel()
        if exited in done:
            return "exited"
        outcome: Outcome = "cancelled" if cancel.is_set() else "timed_out"
        _killpg(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), spec.grace)
        except TimeoutError:
            _killpg(pid, signal.SIGKILL)
            await exited
        # Children that ignored SIGTERM must not outlive the job.
        _killpg(pid, signal.SIGKILL)
        return outcome
