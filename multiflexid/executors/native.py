"""NativeExecutor: the job is a child process (argv, no shell) in its own process group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from asyncio.subprocess import Process

from .base import ExecResult, JobSpec, Outcome, OutputCallback, StartedCallback

READ_SIZE = 64 * 1024
# After the job's main process exits, how long its pipes may stay open (a background
# child still holding them) before the rest of its process group is killed.
LINGER_SECONDS = 2.0


def _killpg(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


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
        exe = spec.argv[0]
        path = spec.env.get("PATH", os.defpath)
        proc = None
        for fresh in (False, True):
            resolved = self._resolve(exe, path, fresh)
            if resolved is None:
                return ExecResult("failed_to_start", message=f"executable {exe!r} not found "
                                                             f"in PATH={path}")
            try:
                proc = await asyncio.create_subprocess_exec(
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
        assert proc is not None
        started(proc.pid)
        readers = [
            asyncio.create_task(self._pump(proc.stdout, "stdout", output)),
            asyncio.create_task(self._pump(proc.stderr, "stderr", output)),
        ]
        outcome = await self._supervise(proc, spec, cancel)
        # The main process is gone; let the pipes drain, then stop stragglers.
        _done, pending = await asyncio.wait(readers, timeout=LINGER_SECONDS)
        if pending:
            _killpg(proc.pid, signal.SIGKILL)
            await asyncio.wait(pending, timeout=LINGER_SECONDS)
            for task in pending:
                task.cancel()
        code = proc.returncode
        message = None
        if code is not None and code < 0:
            message = f"killed by signal {signal.Signals(-code).name}"
            code = 128 - code
        if outcome == "timed_out":
            message = f"timed out after {spec.timeout:g} s; " + (message or "stopped")
        elif outcome == "cancelled":
            message = "cancelled; " + (message or "stopped")
        return ExecResult(outcome, exitcode=code, pid=proc.pid, message=message)

    async def _supervise(
        self, proc: Process, spec: JobSpec, cancel: asyncio.Event
    ) -> Outcome:
        waiter = asyncio.create_task(proc.wait())
        canceller = asyncio.create_task(cancel.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, canceller}, timeout=spec.timeout or None,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            canceller.cancel()
        if waiter in done:
            return "exited"
        outcome: Outcome = "cancelled" if cancel.is_set() else "timed_out"
        _killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), spec.grace)
        except TimeoutError:
            _killpg(proc.pid, signal.SIGKILL)
            await waiter
        # Children that ignored SIGTERM must not outlive the job.
        _killpg(proc.pid, signal.SIGKILL)
        return outcome

    @staticmethod
    async def _pump(
        stream: asyncio.StreamReader | None, name: str, output: OutputCallback
    ) -> None:
        if stream is None:
            return
        while True:
            chunk = await stream.read(READ_SIZE)
            if not chunk:
                return
            output(name, chunk)
