"""When an action fires: a job's outcome against the action's trigger and throttle.

An *outcome* is what an event says about a template: ``success``, ``failure`` (failed,
timed_out, lost — and no retry queued), ``other`` (cancelled, blocked), or None (a failed
attempt whose retry is queued: nothing to say yet). ``previous`` is the template's last
final outcome before this one (success, failure, or None when there is none).

A tick of a template with a deadline fires ``missed`` (not done by its deadline) and
``late`` (done after it) actions: :func:`fires_on_tick`.
"""

from __future__ import annotations

from multiflexi.states import FAILURE_STATES


def outcome_of(state: str, retry_queued: bool) -> str | None:
    if state == "succeeded":
        return "success"
    if state in FAILURE_STATES:
        return None if retry_queued else "failure"
    return "other"


def needs_previous(trigger: str, throttle: str) -> bool:
    return trigger == "recovery" or (trigger == "failure" and throttle == "first")


# The tick's new state -> the trigger it fires.
TICK_TRIGGER_OF = {"missed": "missed", "fulfilled_late": "late"}


def fires_on_tick(trigger: str, throttle: str, state: str, previous: str | None) -> bool:
    """A tick became ``state``; ``previous`` is the state of the template's tick before it
    (None: none tracked). ``first``: only the first miss of a streak of missed ticks."""
    if TICK_TRIGGER_OF.get(state) != trigger:
        return False
    return not (trigger == "missed" and throttle == "first" and previous == "missed")


def fires(trigger: str, throttle: str, outcome: str | None, previous: str | None) -> bool:
    if outcome is None:
        return False
    if trigger == "any":
        return True
    if trigger == "success":
        return outcome == "success"
    if trigger == "failure":
        return outcome == "failure" and (throttle == "every" or previous != "failure")
    if trigger == "recovery":
        return outcome == "success" and previous == "failure"
    return False


def backoff(attempt: int, base: float, cap: float = 3600.0) -> float:
    """Seconds before attempt ``attempt + 1`` after ``attempt`` temporary failures."""
    return min(cap, base * 2 ** max(0, attempt - 1))
