"""The vocabulary of a job's life, one definition for the daemon, the CLI and the TUI.

Which transitions lead from one state to another is the daemon's business
(``multiflexid.domain.jobstate``); what the states are called, which are final and what
each means to an admin is shared here.
"""

from __future__ import annotations

# In the order a job reaches them.
JOB_STATES = (
    "pending",    # queued behind a running job of the same template
    "scheduled",  # queued: runs when due and a node has room
    "claimed",    # a node took it and is about to start it (no process yet, no begin)
    "running",    # its process or container exists (begin is set)
    "succeeded",  # exited 0, or with a code the app declares a success
    "failed",     # exited otherwise, or could not be started
    "timed_out",  # stopped at the template's timeout
    "cancelled",  # cancelled by someone, before or while it ran
    "lost",       # its node stopped while it ran: the result is unknown
    "blocked",    # not started: required configuration missing or invalid
)
QUEUED_STATES = ("pending", "scheduled")
ACTIVE_STATES = ("pending", "scheduled", "claimed", "running")
# A node holds these: a template has at most one of them at a time.
HELD_STATES = ("claimed", "running")
FINAL_STATES = ("succeeded", "failed", "timed_out", "cancelled", "lost", "blocked")
# Outcomes that count as a failure of the template (notifications, retries, counters).
FAILURE_STATES = ("failed", "timed_out", "lost")

MEANING = {
    "pending": "waits for the template's running job to end",
    "scheduled": "waits until it is due and a node has room",
    "claimed": "taken by a node, starting",
    "running": "its process or container runs",
    "succeeded": "ended with success",
    "failed": "ended with an error, or could not start",
    "timed_out": "stopped at its timeout",
    "cancelled": "cancelled",
    "lost": "its node stopped while it ran; result unknown",
    "blocked": "not started: configuration missing or invalid",
}


def is_final(state: str) -> bool:
    return state in FINAL_STATES


def _stages() -> dict[str, int]:
    """Each state's stage: JOB_STATES in order, the queued ones one stage, the final ones
    one stage."""
    stages: dict[str, int] = {}
    stage = 0
    for before, state in zip((None, *JOB_STATES), JOB_STATES, strict=False):
        if before is not None and not any(before in group and state in group
                                          for group in (QUEUED_STATES, FINAL_STATES)):
            stage += 1
        stages[state] = stage
    return stages


# How far along its life a job in each state is (queued 0, claimed 1, running 2, final 3):
# a job moves only forward, but by a release (claimed -> scheduled, which nobody is told).
STAGE = _stages()


# --- actions after a job ------------------------------------------------------------------

# When an action runs. A job's end: ``failure`` is failed, timed_out or lost (a failed
# attempt whose retry was queued is not a failure yet); ``recovery`` the first success
# after a failure; ``any`` every end. A tick of a template with a deadline: ``missed`` (not
# done by its deadline), ``late`` (done, after its deadline: fulfilled_late).
ACTION_TRIGGERS = ("success", "failure", "any", "recovery", "missed", "late")
# The triggers of a tick's event (the others are a job's end).
TICK_TRIGGERS = ("missed", "late")
# For these: every time, or only the first of a streak (the default).
ACTION_STREAK_TRIGGERS = ("failure", "recovery", "missed")
ACTION_THROTTLES = ("first", "every")
# A delivery's life in the ledger.
ACTION_RUN_STATES = (
    "pending",    # waits to be performed (again, after a temporary failure: see next_at)
    "running",    # a daemon performs it now
    "succeeded",  # done
    "failed",     # refused for good (HTTP 4xx, a command's error): not retried by itself
    "gave_up",    # temporary failures until the attempts ran out
)
ACTION_RUN_FINAL = ("succeeded", "failed", "gave_up")
