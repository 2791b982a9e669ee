"""A job's life as data: its transitions, which states each may start from and lead to,
and what an executor's result means (the app's declared exit codes, retries).

The store carries every transition out as one guarded statement
(``UPDATE job ... WHERE id = ... AND state IN (<from>)``, see
``multiflexid.store.transitions``): a job that is not in an allowed state is reported,
never overwritten. The vocabulary (names, final states) is shared with the CLI and the
TUI from ``multiflexi.states``.

::

    create ─► pending ─┐                     ┌─► succeeded | failed | timed_out | cancelled
              scheduled ┴─claim─► claimed ─start─► running ─end─┘
                 ▲                  │   └─end (could not start, cancelled)─► failed | cancelled
                 └────release───────┤                 └─lose─► lost
              cancel ◄──(queued)    └─block─► blocked

    failed | timed_out ─retry─► a new job, pending | scheduled (the next attempt; the
                                ended job stays as it ended)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from multiflexi.errors import Conflict
from multiflexi.states import FINAL_STATES, HELD_STATES, JOB_STATES, QUEUED_STATES

from .appdef import ExitCodeDef
from .retry import RETRYABLE_STATES, may_retry


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[str, ...]  # the states it may start from (empty: a new job)
    targets: tuple[str, ...]  # the states it may lead to
    doc: str


TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    Transition("create", (), QUEUED_STATES, "queued by the scheduler, run now or a retry"),
    Transition("claim", QUEUED_STATES, ("claimed",), "a node takes a due job"),
    Transition("release", ("claimed",), ("scheduled",),
               "a claimed job goes back to the queue: its node is stopping, did not start "
               "it in time, or died before starting it (nobody ran it)"),
    Transition("start", ("claimed",), ("running",), "its process or container is launched"),
    Transition("end", HELD_STATES, ("succeeded", "failed", "timed_out", "cancelled"),
               "its process ended (or it could not be started, or was cancelled before)"),
    Transition("cancel", (*QUEUED_STATES, "claimed"), ("cancelled",),
               "cancelled before it started"),
    Transition("lose", ("running",), ("lost",),
               "its node stopped while it ran (its result is unknown)"),
    Transition("block", ("claimed",), ("blocked",),
               "required configuration missing or invalid: nothing launched"),
    Transition("retry", RETRYABLE_STATES, QUEUED_STATES,
               "the next attempt of a job that failed or timed out is queued: a new job "
               "(its sources are the ended job's states; it stays as it ended)"),
)}


class IllegalTransition(Conflict):
    """A transition asked of a job that is not in a state it may start from."""

    def __init__(self, job_id: int, transition: str, state: str | None) -> None:
        self.job_id, self.transition, self.state = job_id, transition, state
        allowed = TRANSITIONS[transition].sources
        super().__init__(
            f"job {job_id} is {state or 'gone'}; {transition} needs it "
            f"{' or '.join(allowed)}", {"job_id": job_id, "state": state})


def leads_to(transition: str) -> str:
    """The one state a transition leads to (claim, release, cancel, lose, block, start)."""
    (only,) = TRANSITIONS[transition].targets
    return only


def check(transition: str, target: str) -> Transition:
    """The transition, after checking that it may lead to ``target``."""
    t = TRANSITIONS[transition]
    if target not in t.targets:
        raise ValueError(f"{transition} leads to {' or '.join(t.targets)}, not {target!r}")
    return t


assert set(FINAL_STATES) | set(QUEUED_STATES) | set(HELD_STATES) == set(JOB_STATES)
assert all(set(t.sources) | set(t.targets) <= set(JOB_STATES) for t in TRANSITIONS.values())


# --- what an executor's result means -----------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """A job's final state from what its executor reported and what its app declares."""

    state: str
    exitcode: int | None
    reason: str | None
    meaning: ExitCodeDef | None  # the app's declaration of this exit code

    @property
    def declared_retry(self) -> bool | None:
        return self.meaning.retry if self.meaning is not None else None


def verdict(outcome: str, exitcode: int | None, message: str | None,
            meaning: ExitCodeDef | None) -> Verdict:
    """``outcome`` is the executor's: exited, timed_out, cancelled, failed_to_start.
    A non-zero code the app declares ``success`` or ``info`` counts as a success."""
    if outcome == "exited":
        ok = exitcode == 0 or (meaning is not None and meaning.severity in ("success", "info"))
        return Verdict("succeeded" if ok else "failed", exitcode, None, meaning)
    if outcome in ("timed_out", "cancelled"):
        return Verdict(outcome, exitcode, message, meaning)
    return Verdict("failed", exitcode, message, meaning)


def should_retry(state: str, attempt: int, max_attempts: int, meaning: ExitCodeDef | None
                 ) -> bool:
    return may_retry(state, attempt, max_attempts, meaning.retry if meaning else None)


# --- the event every end emits ------------------------------------------------------------


@dataclass(frozen=True)
class JobEnded:
    """A job reached a final state. Emitted once per job by the one path that records
    ends (``multiflexid.store.transitions``), inside the transaction that records it —
    subscribers may add rows to it (an outbox) — and handed on after the commit."""

    job_id: int
    state: str
    at: datetime
    exitcode: int | None = None
    reason: str | None = None
    runtemplate_id: int | None = None
    company_id: int | None = None
    app_id: int | None = None
    attempt: int = 1
    node: str | None = None
    launched_by: str | None = None
    schedule_type: str | None = None
    begin: datetime | None = None
    retry_job_id: int | None = None  # the next attempt queued by this end

    @property
    def succeeded(self) -> bool:
        return self.state == "succeeded"

    def fields(self) -> dict[str, Any]:
        return {"MULTIFLEXI_JOB_ID": self.job_id, "MULTIFLEXI_STATE": self.state,
                "MULTIFLEXI_EXIT_CODE": self.exitcode}
