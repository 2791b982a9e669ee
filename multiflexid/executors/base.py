"""The Executor port: how a prepared job is run, whatever runs it (a process, a container).

An executor gets a fully prepared :class:`JobSpec` (argv, environment, job directory,
limits) and reports back through two callbacks; it never touches the database. It must:

- call ``output(stream, data)`` for every chunk the job prints, as it arrives
  (``stream`` is ``"stdout"`` or ``"stderr"``; ``output`` never blocks);
- call ``started(pid)`` once the job is really running (``pid`` may be None);
- stop the job when ``cancel`` is set or ``spec.timeout`` seconds have passed
  (politely first, then by force after ``spec.grace`` seconds);
- always return an :class:`ExecResult` — a job that cannot start is a result with
  ``outcome="failed_to_start"`` and a message, never an exception and never a hang; a job
  whose end it could not learn (the container engine lost it) is ``outcome="lost"`` with
  the reason, and ``exitcode`` None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

Outcome = Literal["exited", "timed_out", "cancelled", "failed_to_start", "lost"]


@dataclass(frozen=True)
class Limits:
    """Resource limits; executors apply what they can (Podman and Docker all, Native none)."""

    memory: str | None = None  # e.g. "512m"
    cpus: float | None = None
    pids: int | None = None
    network: str | None = None  # container network mode or name; None means no network


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    argv: list[str]
    env: dict[str, str]  # the complete environment of the job
    workdir: Path  # the job's private directory (MULTIFLEXI_TMP), created by the caller
    timeout: float | None = None  # seconds; None or 0: no limit
    grace: float = 10.0  # seconds between the polite stop and the kill
    image: str | None = None  # container image (Podman, Docker)
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    # Backpressure: while this event is clear, stop reading the job's output (the job then
    # blocks writing, as on a slow terminal); read again once it is set. None: never wait.
    flow: asyncio.Event | None = None


@dataclass(frozen=True)
class ExecResult:
    outcome: Outcome
    exitcode: int | None = None
    pid: int | None = None
    message: str | None = None  # why it failed to start / how it was stopped


OutputCallback = Callable[[str, bytes], None]
StartedCallback = Callable[[int | None], None]


class Executor(Protocol):
    """Runs one job at a time per call; many calls may run concurrently."""

    name: str

    async def run(
        self,
        spec: JobSpec,
        output: OutputCallback,
        started: StartedCallback,
        cancel: asyncio.Event,
    ) -> ExecResult: ...
