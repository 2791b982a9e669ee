"""Deadlines: "is today's bank import done by 07:00?" as data.

A run template may have one deadline per tick, either a time of day on the template's own
clock (``07:00``: the first moment after the job is due at which the template's zone
shows 07:00) or a span after the job is due (``2h``: the tick plus the template's delay,
plus two hours). Every tick of such a template is tracked until it is settled:

::

    open ─success by the deadline───────────► fulfilled
      │  ─success after the deadline────────► fulfilled_late
      │  ─last attempt failed, by deadline──► failed ─success─► fulfilled | fulfilled_late
      └──deadline passed without a success──► missed ─success─► fulfilled_late

``missed`` covers everything that is not a success in time and not a known failure: the
daemon was down, the tick was skipped (application or company disabled, coalesced behind a
long job), its job was blocked, cancelled, or is still queued or running. Retries of the
tick's job count toward the same tick; a "run now" while the tick is the template's
latest counts toward it too. ``fulfilled`` and ``fulfilled_late`` are final.

No database, no clock: callers pass the times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import ClassVar

from .schedule import ScheduleError, wall_clock_instants

TICK_STATES = ("open", "fulfilled", "fulfilled_late", "failed", "missed")
SETTLED_STATES = ("fulfilled", "fulfilled_late", "failed", "missed")
FINAL_TICK_STATES = ("fulfilled", "fulfilled_late")

MEANING = {
    "open": "not done yet; its deadline is ahead",
    "fulfilled": "done by its deadline",
    "fulfilled_late": "done, after its deadline",
    "failed": "its last attempt failed before the deadline",
    "missed": "not done by its deadline",
}

MAX_SPAN = timedelta(days=366)
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*$")
_SPAN = re.compile(r"(\d+)\s*([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


class DeadlineError(ScheduleError):
    """A deadline that cannot be used; the message names the field and the value."""


# --- the two kinds of deadline ------------------------------------------------------------


def parse_time_of_day(text: str, field: str = "deadline") -> str:
    """``7:00`` -> ``07:00``; anything but a time of day 00:00-23:59 is refused."""
    match = _TIME.match(text or "")
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise DeadlineError(f"{field}: {text!r} is not a time of day HH:MM (00:00 to 23:59)")
    return f"{int(match[1]):02d}:{match[2]}"


def parse_span(text: str | int, field: str = "deadline_after") -> int:
    """``2h``, ``90m``, ``1h30m``, ``45s``, ``1d`` or plain seconds -> seconds (> 0)."""
    if isinstance(text, bool):
        raise DeadlineError(f"{field}: {text!r} is not a duration (e.g. 2h, 90m, 1h30m)")
    if isinstance(text, int):
        seconds = text
    else:
        raw = text.strip().lower()
        if raw.isdigit():
            seconds = int(raw)
        else:
            parts = _SPAN.findall(raw)
            if not parts or _SPAN.sub("", raw).strip():
                raise DeadlineError(
                    f"{field}: {text!r} is not a duration (e.g. 2h, 90m, 1h30m, 45s, 1d)")
            seconds = sum(int(n) * _UNITS[unit] for n, unit in parts)
    if seconds <= 0 or seconds > MAX_SPAN.total_seconds():
        raise DeadlineError(f"{field}: {text!r} must be more than 0 s and at most 366 days")
    return seconds


def format_span(seconds: int) -> str:
    """7200 -> ``2h``, 5400 -> ``1h30m``, 45 -> ``45s``."""
    out = []
    for unit, size in _UNITS.items():
        n, seconds = divmod(seconds, size)
        if n:
            out.append(f"{n}{unit}")
    return "".join(out) or "0s"


@dataclass(frozen=True)
class Deadline:
    """A template's deadline: ``at`` a time of day (``HH:MM``) or ``after`` seconds."""

    at: str | None = None
    after: int | None = None

    def __post_init__(self) -> None:
        if (self.at is None) == (self.after is None):
            raise DeadlineError("deadline: give either a time of day or a span, not both")

    @classmethod
    def of(cls, at: str | None, after: int | None) -> Deadline | None:
        """The deadline stored as these two columns, or None when neither is set."""
        if at is None and after is None:
            return None
        return cls(at, after)

    def describe(self) -> str:
        """``07:00`` or ``+2h`` (how the CLI and the TUI show it)."""
        return self.at if self.at is not None else f"+{format_span(self.after or 0)}"

    def for_due(self, due: datetime, tz: tzinfo) -> datetime:
        """The deadline of a tick whose job is due at ``due`` (UTC), on the clock of ``tz``."""
        if due.tzinfo is None:
            raise DeadlineError(f"due: {due.isoformat()} is naive; a timezone-aware value is "
                                "needed")
        if self.after is not None:
            return due.astimezone(UTC) + timedelta(seconds=self.after)
        assert self.at is not None
        hour, minute = (int(x) for x in self.at.split(":"))
        start: date = due.astimezone(tz).date()
        for days in range(3):  # today's, else tomorrow's (a gap or fold can shift by one)
            wall = datetime.combine(start + timedelta(days=days), time(hour, minute))
            later = [t for t in wall_clock_instants(tz, wall) if t > due]
            if later:
                return later[0]
        raise DeadlineError(f"deadline: no {self.at} after {due.isoformat()}")  # pragma: no cover


# --- how a tick's state changes --------------------------------------------------------------


def after_success(state: str, at: datetime, deadline: datetime) -> str | None:
    """A job of the tick succeeded at ``at``: the new state, None when it is settled for good."""
    if state in FINAL_TICK_STATES:
        return None
    return "fulfilled" if at <= deadline else "fulfilled_late"


def after_failure(state: str, at: datetime, deadline: datetime) -> str | None:
    """The tick's last attempt failed (no retry left) at ``at``."""
    if state != "open":
        return None
    return "failed" if at <= deadline else "missed"


def at_deadline(state: str) -> str | None:
    return "missed" if state == "open" else None


def not_done_in_time(state: str, deadline: datetime, now: datetime) -> bool:
    """Whether the tick is past its deadline without a success in time (missed, failed,
    still open): what ``runtemplate list --late``, ``check`` and the metrics alert on."""
    if state == "missed":
        return True
    return state in ("open", "failed") and deadline <= now


def shown_state(state: str, deadline: datetime, now: datetime) -> str:
    """The state as of ``now``: an open tick whose deadline passed is missed, even before
    the daemon has written so (or while it is down)."""
    return "missed" if state == "open" and deadline <= now else state


# --- the events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TickSettled:
    """A tracked tick changed state. Emitted once per change by the one path that writes
    tick states (``multiflexid.store.deadlines``), inside the transaction that records it,
    and handed on after the commit (like ``JobEnded``). Subscribe to a kind with
    ``isinstance`` (:class:`TickMissed`, :class:`TickLate`...) or by ``trigger``."""

    trigger: ClassVar[str] = ""
    runtemplate_id: int
    company_id: int
    app_id: int
    tick: datetime
    deadline: datetime
    state: str
    previous: str
    at: datetime
    job_id: int | None = None
    tick_id: int | None = None  # its row (``runtemplate_tick.id``)

    def fields(self) -> dict[str, object]:
        return {"MULTIFLEXI_RUNTEMPLATE_ID": self.runtemplate_id,
                "MULTIFLEXI_TICK": self.tick.isoformat(), "MULTIFLEXI_TICK_STATE": self.state}


class TickFulfilled(TickSettled):
    trigger = "fulfilled"


class TickLate(TickSettled):
    """Done, but after the deadline (the ``fulfilled_late`` event)."""

    trigger = "late"


class TickFailed(TickSettled):
    trigger = "failed"


class TickMissed(TickSettled):
    """Not done by the deadline (the ``missed`` event)."""

    trigger = "missed"


EVENT_OF_STATE: dict[str, type[TickSettled]] = {
    "fulfilled": TickFulfilled,
    "fulfilled_late": TickLate,
    "failed": TickFailed,
    "missed": TickMissed,
}
