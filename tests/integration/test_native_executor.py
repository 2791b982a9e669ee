"""NativeExecutor on its own: real processes, no daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path

from multiflexid.executors.base import ExecResult, JobSpec
from multiflexid.executors.native import NativeExecutor


def _spec(tmp_path: Path, script: str, **kw: object) -> JobSpec:
    return JobSpec(job_id=1, argv=["sh", "-c", script], env={"PATH": "/usr/bin:/bin"},
                   workdir=tmp_path, **kw)  # type: ignore[arg-type]


def test_backpressure_pauses_the_job_until_output_may_flow(tmp_path: Path) -> None:
    """While the flow event is clear the job's pipe is not read: the job blocks writing
    (its pipe buffer fills), and nothing is lost once reading resumes."""
    total = 4 * 1024 * 1024

    async def scenario() -> tuple[int, int, bool, ExecResult]:
        flow = asyncio.Event()
        flow.clear()
        got = bytearray()
        spec = _spec(tmp_path, f"head -c {total} /dev/zero", flow=flow)
        task = asyncio.create_task(NativeExecutor().run(
            spec, lambda _s, data: got.extend(data), lambda _pid: None, asyncio.Event()))
        await asyncio.sleep(1.0)
        paused_at, still_running = len(got), not task.done()
        flow.set()
        result = await asyncio.wait_for(task, 30)
        return paused_at, len(got), still_running, result

    paused_at, final, still_running, result = asyncio.run(scenario())
    assert still_running  # blocked on its full pipe, not finished
    assert paused_at < 1024 * 1024  # about a pipe buffer or two, not the 4 MiB
    assert final == total and result.exitcode == 0


def test_a_missing_program_fails_to_start_with_the_path_searched(tmp_path: Path) -> None:
    spec = JobSpec(job_id=1, argv=["no-such-program-x"], env={"PATH": "/usr/bin:/bin"},
                   workdir=tmp_path)
    result = asyncio.run(NativeExecutor().run(spec, lambda *_: None, lambda _p: None,
                                              asyncio.Event()))
    assert result.outcome == "failed_to_start"
    assert result.message == "executable 'no-such-program-x' not found in PATH=/usr/bin:/bin"
