"""How values from the daemon are shown: times, durations, states, schedules, sizes.

Pure functions, no Textual. Times come from the daemon as ISO 8601 in UTC and are shown in
the local zone of the admin's terminal (:data:`LOCAL_ZONE`, the system's by default; tests
pin it). Only :data:`CLOCK` reads the clock, so the same data always renders the same text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any

from rich.text import Text

from multiflexi import states

# None: the zone of the machine the TUI runs on.
LOCAL_ZONE: tzinfo | None = None

# The one place the TUI reads the clock (the wizard's schedule preview starts from it);
# snapshot tests freeze it.
def _system_clock() -> datetime:
    return datetime.now(UTC)


CLOCK: Callable[[], datetime] = _system_clock

FINAL_STATES = frozenset(states.FINAL_STATES)
ACTIVE_STATES = frozenset(states.ACTIVE_STATES)
JOB_STATES = states.JOB_STATES

STATE_STYLES = {
    "pending": "yellow",
    "scheduled": "cyan",
    "claimed": "blue",
    "running": "bold blue",
    "succeeded": "green",
    "failed": "bold red",
    "timed_out": "red",
    "cancelled": "magenta",
    "lost": "bold magenta",
    "blocked": "yellow",
}
STATE_MARKS = {
    "pending": "…",
    "scheduled": "◷",
    "claimed": "▷",
    "running": "▶",
    "succeeded": "✔",
    "failed": "✘",
    "timed_out": "⌛",
    "cancelled": "■",
    "lost": "?",
    "blocked": "⊘",
}

INTERVALS = {
    "i": "minutely",
    "h": "hourly",
    "d": "daily",
    "w": "weekly",
    "m": "monthly",
    "y": "yearly",
    "c": "cron",
    "n": "never",
}

DASH = "—"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def local(value: str | None) -> datetime | None:
    moment = parse_time(value)
    if moment is None:
        return None
    return moment.astimezone(LOCAL_ZONE)


def short_time(value: str | None) -> str:
    """``05-01 08:00`` in the local zone (tables), or a dash."""
    moment = local(value)
    return moment.strftime("%m-%d %H:%M") if moment else DASH


def full_time(value: str | None) -> str:
    """``2024-05-01 08:00:00 +02:00`` in the local zone (details), or a dash."""
    moment = local(value)
    if moment is None:
        return DASH
    offset = moment.strftime("%z")
    return moment.strftime("%Y-%m-%d %H:%M:%S ") + f"{offset[:3]}:{offset[3:]}"


def seconds_text(total: float) -> str:
    if total < 0:
        total = 0
    if total < 10:
        return f"{total:.1f}s"
    whole = int(total)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def duration_seconds(begin: str | None, end: str | None) -> float | None:
    start, stop = parse_time(begin), parse_time(end)
    if start is None or stop is None:
        return None
    return (stop - start).total_seconds()


def duration(begin: str | None, end: str | None) -> str:
    """How long a job took (empty while it runs or never ran)."""
    start, stop = parse_time(begin), parse_time(end)
    if start is None or stop is None:
        return ""
    return seconds_text((stop - start).total_seconds())


def due_text(due: dict[str, Any]) -> str:
    """A due time of a schedule preview, in the template's own zone (``local``)."""
    moment = parse_time(due.get("local"))
    return moment.strftime("%a %Y-%m-%d %H:%M %z") if moment else "?"


def state_text(state: str | None) -> Text:
    if not state:
        return Text(DASH)
    return Text(f"{STATE_MARKS.get(state, ' ')} {state}", style=STATE_STYLES.get(state, ""))


def exit_text(job: dict[str, Any]) -> str:
    code = job.get("exitcode")
    return DASH if code is None else str(code)


def exit_meaning_text(job: dict[str, Any]) -> str:
    """``3 (error: Invalid configuration)`` — the exit code and what the app says it means."""
    code = job.get("exitcode")
    if code is None:
        return DASH
    meaning = job.get("exit_meaning")
    if not meaning:
        return f"{code} (the application declares no meaning for it)"
    description = meaning.get("description") or ""
    if isinstance(description, dict):
        description = description.get("en") or next(iter(description.values()), "")
    severity = meaning.get("severity") or ""
    retry = ", retried" if meaning.get("retry") else ""
    return f"{code} ({severity}{retry}: {description})" if description else f"{code} ({severity})"


def schedule_text(rt: dict[str, Any]) -> str:
    interv = rt.get("interv") or "n"
    if interv == "c":
        return f"cron {rt.get('cron') or '?'}"
    return INTERVALS.get(interv, interv)


def last_job_text(last: dict[str, Any] | None) -> Text:
    if not last:
        return Text(DASH)
    state = last.get("state") or "?"
    text = Text(f"{STATE_MARKS.get(state, ' ')} {state}", style=STATE_STYLES.get(state, ""))
    if last.get("exitcode") not in (None, 0):
        text.append(f" ({last['exitcode']})")
    text.append(f" #{last.get('id')}", style="dim")
    return text


TICK_STYLES = {
    "open": ("◷ due", "cyan"),
    "fulfilled": ("✔ on time", "green"),
    "fulfilled_late": ("⚠ late", "bold yellow"),
    "failed": ("✘ failed", "bold red"),
    "missed": ("✘ MISSED", "bold red reverse"),
}


def tick_text(rt: dict[str, Any]) -> Text:
    """A template's current tick against its deadline, at a glance: ``◷ due 07:00``,
    ``✔ on time``, ``⚠ late``, ``✘ failed``, ``✘ MISSED``; its deadline (dim) while no tick
    is tracked yet; a dash without a deadline."""
    if not rt.get("deadline"):
        return Text(DASH)
    tick = rt.get("tick")
    if not tick:
        return Text(str(rt["deadline"]), style="dim")
    state = tick.get("state") or "?"
    label, style = TICK_STYLES.get(state, (state, ""))
    text = Text(label, style=style)
    if state in ("open", "missed"):
        moment = local(tick.get("deadline"))
        if moment is not None:
            text.append(f" {moment.strftime('%H:%M')}", style="" if state == "open" else style)
    return text


def tick_rank(rt: dict[str, Any]) -> int:
    """Sort order: the ones to look at first (missed, failed, late) first."""
    order = ("missed", "failed", "fulfilled_late", "open", "fulfilled")
    state = (rt.get("tick") or {}).get("state")
    return order.index(state) if state in order else len(order)


def yes_no(value: Any) -> Text:
    return Text("yes", style="green") if value else Text("no", style="dim")


REASON_WIDTH = 32


def active_text(rt: dict[str, Any]) -> Text:
    """A template's On column: ``yes``, ``no``, or — switched off by an action (Stop) —
    ``no: <the reason>`` in yellow (cut to REASON_WIDTH; the template screen shows all)."""
    reason = (rt.get("inactive_reason") or "").strip()
    if rt.get("active") or not reason:
        return yes_no(rt.get("active"))
    text = f"no: {reason}"
    if len(text) > REASON_WIDTH:
        text = text[:REASON_WIDTH - 1] + "…"
    return Text(text, style="bold yellow")


def size_text(size: int | None) -> str:
    if size is None:
        return DASH
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def plain(value: Any) -> str:
    """A cell value as text (for filtering)."""
    if isinstance(value, Text):
        return value.plain
    if value is None:
        return ""
    return str(value)


def text_of(value: Any) -> str:
    """A localized value from the daemon (``{"en": ..., "cs": ...}`` or a plain string)."""
    if isinstance(value, dict):
        return str(value.get("en") or next(iter(value.values()), "") or "")
    if value is None:
        return ""
    return str(value)
