"""FakeExecutor: an in-memory executor for tests of the daemon's hot path (the
dispatcher, the writer, the socket server) without processes or containers — shipped in
the package, like procrastinate's in-memory connector, so anyone can test against it.

It keeps the Executor port's promises: ``started`` once the "process" exists, output
through the callback, cancel and timeout honoured, always an :class:`ExecResult`. What a
job does is scripted by its environment, so a run template's configuration (or a
one-off override) decides it:

- ``FAKE_OUTPUT``: what it prints to stdout (``\\n`` escapes allowed), ``FAKE_STDERR``;
- ``FAKE_EXIT``: its exit code (default 0); ``FAKE_SECONDS``: how long it runs;
- ``FAKE_HOLD=1``: it runs until the test releases it (:meth:`release`) or it is
  cancelled or times out;
- ``FAKE_START_FAIL``: it cannot be started, with that message.

Every run is recorded in :attr:`runs` (by job id) so a test can wait for a job to be
really running (:meth:`wait_started`) and see what it was given.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from .base import ExecResult, JobSpec, OutputCallback, StartedCallback

_pids = itertools.count(100_000)


@dataclass
class FakeRun:
    spec: JobSpec
    started: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    exitcode: int | None = None  # set by release(), else FAKE_EXIT
    result: ExecResult | None = None


class FakeExecutor:
    name = "Fake"

    def __init__(self) -> None:
        self.runs: dict[int, FakeRun] = {}
        self._changed = asyncio.Event()

    @property
    def running(self) -> list[int]:
        return sorted(j for j, r in self.runs.items() if r.started.is_set() and r.result is None)

    async def wait_started(self, job_id: int, within: float = 10.0) -> FakeRun:
        async def until() -> FakeRun:
            while job_id not in self.runs:
                self._changed.clear()
                await self._changed.wait()
            run = self.runs[job_id]
            await run.started.wait()
            return run

        return await asyncio.wait_for(until(), within)

    def release(self, job_id: int, exitcode: int = 0) -> None:
        run = self.runs[job_id]
        run.exitcode = exitcode
        run.released.set()

    async def run(self, spec: JobSpec, output: OutputCallback, started: StartedCallback,
                  cancel: asyncio.Event) -> ExecResult:
        env = spec.env
        if env.get("FAKE_START_FAIL"):
            return ExecResult("failed_to_start", message=env["FAKE_START_FAIL"])
        run = self.runs[spec.job_id] = FakeRun(spec)
        pid = next(_pids)
        started(pid)
        run.started.set()
        self._changed.set()
        for stream, key in (("stdout", "FAKE_OUTPUT"), ("stderr", "FAKE_STDERR")):
            if env.get(key):
                output(stream, env[key].replace("\\n", "\n").encode())
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(cancel.wait())]
        if env.get("FAKE_HOLD") == "1":
            waits.append(asyncio.ensure_future(run.released.wait()))
        else:
            waits.append(asyncio.ensure_future(asyncio.sleep(float(env.get("FAKE_SECONDS",
                                                                           "0")))))
        try:
            done, _ = await asyncio.wait(waits, timeout=spec.timeout or None,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if cancel.is_set():
            result = ExecResult("cancelled", exitcode=143, pid=pid,
                                message="cancelled; stopped by SIGTERM")
        elif not done:
            result = ExecResult("timed_out", exitcode=143, pid=pid,
                                message=f"timed out after {spec.timeout:g} s; stopped")
        else:
            code = run.exitcode if run.exitcode is not None else int(env.get("FAKE_EXIT", "0"))
            result = ExecResult("exited", exitcode=code, pid=pid)
        run.result = result
        self._changed.set()
        return result
