"""NativeExecutor: the job is a child process (argv, no shell) in its own process group.

The child is started with ``subprocess.Popen`` on pipes of our own (vfork + exec, its
directory as working directory, a session of its own), and then watched with plain
event-loop readers: one per pipe, each chunk handed to the output callback as it
arrives, and a pidfd that becomes readable when the child exits (reaped with
``waitid``). No asyncio subprocess transport, protocol or child watcher in between: a
trivial job costs the loop a few callbacks and the daemon a third less CPU to launch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
from typing import Any

from .base import ExecResult, JobSpec, Outcome, OutputCallback, StartedCallback

# After the job's main process exits, how long its pipes may stay open (a background
# child still holding them) before the rest of its process group is killed.
LINGER_SECONDS = 2.0
# Largest read from a pipe (as asyncio's pipe transports read).
READ_SIZE = 256 * 1024


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class _Child:
    """A started job's process: its output pipes and its exit, watched by the loop."""

    def __init__(self, proc: subprocess.Popen[bytes], pipes: dict[int, str],
                 output: OutputCallback, flow: asyncio.Event | None) -> None:
        self.loop = asyncio.get_running_loop()
        self.proc = proc
        self.pid = proc.pid
        self.pipes = pipes  # fd -> stream, while open
        self.output = output
        self.flow = flow
        self.exited: asyncio.Future[None] = self.loop.create_future()
        self.drained: asyncio.Future[None] = self.loop.create_future()
        self._resumer: asyncio.Task[None] | None = None
        self._pidfd: int | None = None
        for fd in pipes:
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, self._read, fd)
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): wait in a thread
            waiting = asyncio.ensure_future(asyncio.to_thread(proc.wait))
            waiting.add_done_callback(lambda _w: self._settle_exit())
        else:
            self.loop.add_reader(self._pidfd, self._reap)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close_pipe(fd)
            return
        self.output(self.pipes[fd], data)
        if self.flow is not None and not self.flow.is_set() and self._resumer is None:
            for pipe in self.pipes:  # backpressure: the job blocks writing meanwhile
                self.loop.remove_reader(pipe)
            self._resumer = asyncio.ensure_future(self._resume_when_flowing())

    async def _resume_when_flowing(self) -> None:
        assert self.flow is not None
        await self.flow.wait()
        self._resumer = None
        for pipe in self.pipes:
            self.loop.add_reader(pipe, self._read, pipe)

    def _close_pipe(self, fd: int) -> None:
        self.loop.remove_reader(fd)
        os.close(fd)
        del self.pipes[fd]
        if not self.pipes and not self.drained.done():
            self.drained.set_result(None)

    def _reap(self) -> None:
        assert self._pidfd is not None
        self.loop.remove_reader(self._pidfd)
        try:
            info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED)
        except ChildProcessError:  # reaped by someone else: its status is unknown
            info = None
        os.close(self._pidfd)
        self._pidfd = None
        if info is not None:
            killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
            # What Popen would say (and so it never waits for it again itself).
            self.proc.returncode = -info.si_status if killed else info.si_status
        elif self.proc.returncode is None:
            self.proc.returncode = 0
        self._settle_exit()

    def _settle_exit(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def close(self) -> None:
        """Stop watching: pipes still open are closed (the job is over or abandoned)."""
        for fd in list(self.pipes):
            self._close_pipe(fd)
        if self._resumer is not None:
            self._resumer.cancel()
        if self._pidfd is not None:  # not reaped (an error on the way): reap it later
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None


class NativeExecutor:
    name = "Native"

    def __init__(self) -> None:
        # Where each (program, PATH) was found; a program that moved is looked up again.
        self._which: dict[tuple[str, str], str | None] = {}
        self._devnull: int | None = None  # every job's stdin

    def _resolve(self, exe: str, path: str, fresh: bool = False) -> str | None:
        if "/" in exe:
            return exe
        key = (exe, path)
        if fresh or key not in self._which:
            self._which[key] = shutil.which(exe, path=path)
        return self._which[key]

    def _spawn(self, exe: str, spec: JobSpec, output: OutputCallback) -> _Child:
        if self._devnull is None:
            self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = subprocess.Popen(
                [exe, *spec.argv[1:]], stdin=self._devnull, stdout=out_w, stderr=err_w,
                cwd=spec.workdir, env=spec.env,
                start_new_session=True,  # own session and process group: stop them all
            )
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        return _Child(proc, {out_r: "stdout", err_r: "stderr"}, output, spec.flow)

    async def run(
        self,
        spec: JobSpec,
        output: OutputCallback,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult:
        exe = spec.argv[0]
        path = spec.env.get("PATH", os.defpath)
        child: _Child | None = None
        for fresh in (False, True):
            resolved = self._resolve(exe, path, fresh)
            if resolved is None:
                return ExecResult("failed_to_start", message=f"executable {exe!r} not found "
                                                             f"in PATH={path}")
            try:
                child = self._spawn(resolved, spec, output)
                break
            except FileNotFoundError as exc:
                if fresh or "/" in exe:
                    return ExecResult("failed_to_start",
                                      message=f"cannot start {resolved}: {exc.strerror}")
            except OSError as exc:
                return ExecResult("failed_to_start",
                                  message=f"cannot start {resolved}: {exc.strerror or exc}")
        assert child is not None
        pid = child.pid
        started(pid)
        try:
            outcome = await self._supervise(child, spec, cancel)
            # The main process is gone; let the pipes drain, then stop stragglers.
            if not child.drained.done():
                try:
                    await asyncio.wait_for(asyncio.shield(child.drained), LINGER_SECONDS)
                except TimeoutError:
                    _killpg(pid, signal.SIGKILL)
            code = child.returncode
        finally:
            child.close()
        message = None
        if code is not None and code < 0:
            message = f"killed by signal {signal.Signals(-code).name}"
            code = 128 - code
        if outcome == "timed_out":
            message = f"timed out after {spec.timeout:g} s; " + (message or "stopped")
        elif outcome == "cancelled":
            message = "cancelled; " + (message or "stopped")
        return ExecResult(outcome, exitcode=code, pid=pid, message=message)

    async def _supervise(self, child: _Child, spec: JobSpec, cancel: asyncio.Event
                         ) -> Outcome:
        exited = child.exited
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
        _killpg(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), spec.grace)
        except TimeoutError:
            _killpg(child.pid, signal.SIGKILL)
            await exited
        # Children that ignored SIGTERM must not outlive the job.
        _killpg(child.pid, signal.SIGKILL)
        return outcome
