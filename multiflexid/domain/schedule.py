"""Pure scheduling math for run templates: interval codes, cron, time zones, DST, catch-up.

No database, no asyncio, no systemd: only the standard library and croniter.

Interval codes (upstream ``Scheduler.php``)
--------------------------------------------
``i`` minutely ``* * * * *``, ``h`` hourly ``0 * * * *``, ``d`` daily ``0 0 * * *``,
``w`` weekly on Monday ``0 0 * * 1``, ``m`` monthly ``0 0 1 * *``, ``y`` yearly
``0 0 1 1 *``, ``c`` custom (the template's ``cron``), ``n`` disabled (no ticks).
A ``c`` template whose cron is empty behaves as ``n``.

Ticks and due times
-------------------
A *tick* is the instant the cron expression names. A job is *due* at ``tick + delay``
seconds. Every function takes and returns timezone-aware datetimes; results are in UTC.
Naive datetimes are rejected with :class:`ScheduleError`.

Time zones
----------
The cron expression is evaluated on the wall clock of the template's IANA time zone
(``None``/empty: the system's local zone, see :func:`detect_system_timezone`).
Candidates are produced by croniter on *naive* local wall-clock times only; this module
then maps each wall-clock candidate to UTC itself, with explicit ``fold`` handling, so
croniter's own DST handling is never used.

DST rule (the same split as cronie / Vixie cron between "wildcard" and "fixed-time" jobs)
------------------------------------------------------------------------------------------
A cron is *every-hour* when its hour field matches all 24 hours (``i``, ``h``, ``*/1``,
``0-23``, ``15 * * * *`` ...); otherwise it is *fixed-hour* (``d``, ``w``, ``m``, ``y``,
``30 2 * * *``, ``0 */2 * * *`` ...).

* Spring forward (wall-clock times in the gap do not exist, e.g. 02:00–02:59 in
  Europe/Prague on 2026-03-29):

  - fixed-hour: a tick whose wall-clock time falls in the gap runs once, at the first
    instant after the gap (the transition instant; e.g. ``30 2 * * *`` runs at 03:00
    CEST = 01:00 UTC). If another tick of the same cron maps to that same instant it is
    the same tick, not a second one.
  - every-hour: wall-clock times in the gap are skipped (those hours never existed).

* Fall back (wall-clock times in the repeated period happen twice, e.g. 02:00–02:59 in
  Europe/Prague on 2026-10-25):

  - fixed-hour: the tick runs only at the first occurrence (``fold=0``).
  - every-hour: the tick runs at both occurrences (``fold=0`` and ``fold=1``).

Consequences: a daily 02:30 job runs exactly once on both DST days; an hourly (or
minutely) job runs once per real elapsed hour (minute): 23 times on a spring-forward day
and 25 times on a fall-back day. Successive ticks are strictly increasing in UTC and never
repeat.

Catch-up
--------
When the daemon was down across several ticks, only the most recent missed tick runs, once
(like systemd's ``Persistent=true``); see :func:`catch_up`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import Enum
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = [
    "INTERVALS",
    "INTERVAL_CRONS",
    "Recurrence",
    "ScheduleError",
    "catch_up",
    "detect_system_timezone",
    "interval_cron",
    "last_tick_at_or_before",
    "next_due",
    "next_tick",
    "resolve_timezone",
    "system_timezone",
    "upcoming",
    "validate_cron",
    "validate_timezone",
    "wall_clock_instants",
]


class ScheduleError(ValueError):
    """A schedule definition or argument is invalid; the message names field and value."""


#: interval code -> the job ``schedule_type`` name (``n`` never creates jobs)
INTERVALS: dict[str, str] = {
    "i": "minutely",
    "h": "hourly",
    "d": "daily",
    "w": "weekly",
    "m": "monthly",
    "y": "yearly",
    "c": "custom",
    "n": "disabled",
}

#: interval code -> the fixed cron expression it stands for
INTERVAL_CRONS: dict[str, str] = {
    "i": "* * * * *",
    "h": "0 * * * *",
    "d": "0 0 * * *",
    "w": "0 0 * * 1",
    "m": "0 0 1 * *",
    "y": "0 0 1 1 *",
}

_CRON_ALIASES = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MAX_STEPS = 100_000  # safety net; real schedules need a handful of croniter steps
_ONE_SECOND = timedelta(seconds=1)
_ONE_MICROSECOND = timedelta(microseconds=1)


def _known_codes() -> str:
    return ", ".join(sorted(INTERVALS))


def interval_cron(interv: str, cron: str | None) -> str | None:
    """The cron expression an interval code stands for; None when nothing is scheduled.

    ``c`` returns the (stripped) template cron, or None when it is empty; ``n`` returns None.
    The custom cron is not validated here (see :func:`validate_cron`).
    """
    if interv not in INTERVALS:
        raise ScheduleError(
            f"interv: {interv!r} is not a known interval code (one of {_known_codes()})"
        )
    if interv == "c":
        expr = (cron or "").strip()
        return expr or None
    return INTERVAL_CRONS.get(interv)


@lru_cache(maxsize=4096)
def _cron_info(expr: str) -> bool:
    """Validate ``expr``; return True when its hour field matches all 24 hours."""
    fields = expr.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].lower() in _CRON_ALIASES)):
        raise ScheduleError(
            f"cron: {expr!r} is not a valid cron expression: expected 5 fields "
            "(minute hour day-of-month month day-of-week) or one of "
            + ", ".join(sorted(_CRON_ALIASES))
        )
    try:
        itr = croniter(expr, datetime(2000, 1, 1))  # noqa: DTZ001 - naive wall clock on purpose
        expanded = itr.expanded
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ScheduleError(f"cron: {expr!r} is not a valid cron expression: {exc}") from exc
    try:
        itr.get_next(datetime)
    except CroniterBadDateError as exc:
        raise ScheduleError(f"cron: {expr!r} never matches any date") from exc
    hours = expanded[1]
    return hours == ["*"] or set(hours) >= set(range(24))


def validate_cron(expr: str) -> str:
    """Return the stripped expression, or raise :class:`ScheduleError`."""
    stripped = expr.strip()
    if not stripped:
        raise ScheduleError("cron: '' is empty")
    _cron_info(stripped)
    return stripped


def validate_timezone(name: str | None) -> str | None:
    """Return the stripped IANA name (None for the system zone), or raise."""
    if name is None or not name.strip():
        return None
    key = name.strip()
    try:
        ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ScheduleError(f"timezone: {name!r} is not a known IANA time zone") from exc
    return key


# --------------------------------------------------------------------------- system zone


def _zone_from_path(path: str) -> tzinfo | None:
    """A zone from a path such as /usr/share/zoneinfo/Europe/Prague (key kept if possible)."""
    marker = "zoneinfo/"
    idx = path.rfind(marker)
    if idx >= 0:
        key = path[idx + len(marker) :]
        for prefix in ("posix/", "right/"):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open(path, "rb") as fh:
            return ZoneInfo.from_file(fh, key=path)
    except (OSError, ValueError):
        return None


def _zone_from_name(name: str) -> tzinfo | None:
    name = name.strip()
    if name.startswith(":"):
        name = name[1:]
    if not name:
        return None
    if name.startswith("/"):
        return _zone_from_path(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _utc_zone() -> tzinfo:
    try:
        return ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, OSError):
        return UTC


def detect_system_timezone(
    environ: Mapping[str, str] | None = None,
    etc_timezone: Path | str = "/etc/timezone",
    etc_localtime: Path | str = "/etc/localtime",
) -> tzinfo:
    """Find the system's local zone.

    Order: ``TZ`` (an IANA name, ``:name`` or a zoneinfo path; set but empty means UTC,
    as in libc; a POSIX rule string is ignored), the ``/etc/localtime`` symlink target
    (what libc and systemd use), ``/etc/timezone``, the contents of a non-symlink
    ``/etc/localtime``, else UTC.
    """
    env = os.environ if environ is None else environ
    tz_env = env.get("TZ")
    if tz_env is not None:
        if not tz_env.strip(": \t"):
            return _utc_zone()
        zone = _zone_from_name(tz_env)
        if zone is not None:
            return zone
    localtime = Path(etc_localtime)
    if localtime.is_symlink():
        zone = _zone_from_path(os.path.realpath(localtime))
        if zone is not None:
            return zone
    try:
        lines = Path(etc_timezone).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    if lines:
        zone = _zone_from_name(lines[0])
        if zone is not None:
            return zone
    if localtime.is_file() and not localtime.is_symlink():
        zone = _zone_from_path(str(localtime))
        if zone is not None:
            return zone
    return _utc_zone()


@lru_cache(maxsize=1)
def system_timezone() -> tzinfo:
    """The system's local zone, detected once (``system_timezone.cache_clear()`` to redo)."""
    return detect_system_timezone()


def resolve_timezone(name: str | None) -> tzinfo:
    """The zone for a template's ``timezone`` value (None/empty: the system zone)."""
    key = validate_timezone(name)
    return system_timezone() if key is None else ZoneInfo(key)


# --------------------------------------------------------------------------- recurrence


@dataclass(frozen=True)
class _Plan:
    expr: str
    tzname: str | None  # None: the system zone, resolved at use time
    every_hour: bool

    @property
    def tz(self) -> tzinfo:
        return system_timezone() if self.tzname is None else ZoneInfo(self.tzname)


@lru_cache(maxsize=4096)
def _plan(interv: str, cron: str | None, timezone: str | None) -> _Plan | None:
    expr = interval_cron(interv, cron)
    tzname = validate_timezone(timezone)
    if expr is None:
        return None
    return _Plan(expr=expr, tzname=tzname, every_hour=_cron_info(expr))


@dataclass(frozen=True)
class Recurrence:
    """When a run template ticks: interval code, custom cron, IANA zone, delay (s)."""

    interv: str
    cron: str | None = None
    timezone: str | None = None
    delay: int = 0

    def validate(self) -> None:
        """Raise :class:`ScheduleError` naming the first bad field."""
        if isinstance(self.delay, bool) or not isinstance(self.delay, int):
            raise ScheduleError(f"delay: {self.delay!r} is not a whole number of seconds")
        if self.delay < 0:
            raise ScheduleError(f"delay: {self.delay!r} must not be negative")
        _plan(self.interv, self.cron, self.timezone)

    @property
    def effective_interv(self) -> str:
        """The code actually in force: ``c`` with an empty cron is ``n``."""
        if interval_cron(self.interv, self.cron) is None:
            return "n"
        return self.interv

    @property
    def schedule_type(self) -> str:
        """The job ``schedule_type`` for ticks of this recurrence (``disabled`` for ``n``)."""
        return INTERVALS[self.effective_interv]

    @property
    def enabled(self) -> bool:
        return self.effective_interv != "n"


def _compiled(rec: Recurrence) -> _Plan | None:
    rec.validate()
    return _plan(rec.interv, rec.cron, rec.timezone)


def _as_utc(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime):
        raise ScheduleError(f"{name}: {value!r} is not a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ScheduleError(
            f"{name}: {value.isoformat()} is naive; a timezone-aware value is needed"
        )
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- wall clock -> UTC


class _Kind(Enum):
    NORMAL = 0  # exists once
    AMBIGUOUS = 1  # exists twice (fall back)
    GAP = 2  # does not exist (spring forward)


@dataclass(frozen=True)
class _Wall:
    kind: _Kind
    first: datetime  # NORMAL: the instant; AMBIGUOUS: fold=0; GAP: the transition instant
    second: datetime  # AMBIGUOUS: fold=1; otherwise == first
    gap_start: datetime | None = None  # GAP: naive wall clock where the gap begins
    gap_end: datetime | None = None  # GAP: naive wall clock where the gap ends


def _resolve(tz: tzinfo, wall: datetime) -> _Wall:
    """Map a naive wall-clock time of ``tz`` to its UTC instant(s)."""
    u0 = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    u1 = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if u0 == u1:
        return _Wall(_Kind.NORMAL, u0, u0)
    lo, hi = min(u0, u1), max(u0, u1)
    if lo.astimezone(tz).replace(tzinfo=None) == wall:
        return _Wall(_Kind.AMBIGUOUS, lo, hi)
    # A gap: the transition lies in (lo, hi]; find it to the second.
    target = hi.astimezone(tz).utcoffset()
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(tz).utcoffset() == target:
            hi_s = mid
        else:
            lo_s = mid
    transition = datetime.fromtimestamp(hi_s, UTC)
    gap_end = transition.astimezone(tz).replace(tzinfo=None)
    gap_start = (transition - _ONE_SECOND).astimezone(tz).replace(tzinfo=None) + _ONE_SECOND
    return _Wall(_Kind.GAP, transition, transition, gap_start, gap_end)


def wall_clock_instants(tz: tzinfo, wall: datetime) -> tuple[datetime, ...]:
    """The UTC instants at which the clock of ``tz`` shows the naive ``wall`` time: one
    normally, two in a repeated period (fall back, earliest first), and in a gap (spring
    forward) the one instant the clock jumps over it."""
    resolved = _resolve(tz, wall)
    if resolved.kind is _Kind.AMBIGUOUS:
        return resolved.first, resolved.second
    return (resolved.first,)


def _fold_shift(local: datetime) -> timedelta | None:
    """For an aware local time in a repeated period, the repeat length; else None."""
    other = local.replace(fold=1 - local.fold)
    off, other_off = local.utcoffset(), other.utcoffset()
    if off is None or other_off is None or off == other_off:
        return None
    if other.astimezone(UTC) == local.astimezone(UTC):
        return None
    shift = abs(off - other_off)
    return shift if shift > timedelta(0) else None


def _next(plan: _Plan, after: datetime) -> datetime:
    tz = plan.tz
    local = after.astimezone(tz)
    naive = local.replace(tzinfo=None)

    best: datetime | None = None
    fold0_hit = False
    itr = croniter(plan.expr, naive)
    for _ in range(_MAX_STEPS):
        wall = _resolve(tz, itr.get_next(datetime))
        if wall.kind is _Kind.NORMAL:
            if wall.first > after:
                best = wall.first
                break
        elif wall.kind is _Kind.AMBIGUOUS:
            if wall.first > after:
                best, fold0_hit = wall.first, True
                break
            if plan.every_hour and wall.second > after:
                best = wall.second
                break
        elif not plan.every_hour:
            if wall.first > after:
                best = wall.first
                break
        else:
            assert wall.gap_end is not None
            itr = croniter(plan.expr, wall.gap_end - _ONE_MICROSECOND)
    if best is None:
        raise RuntimeError(f"no tick found for {plan.expr!r} after {after.isoformat()}")

    # `after` lies in the first pass of a repeated period: for every-hour crons the second
    # pass of wall-clock times at or before `after`'s wall clock is still to come.
    if plan.every_hour and not fold0_hit and local.fold == 0:
        shift = _fold_shift(local)
        if shift is not None:
            itr = croniter(plan.expr, naive - shift)
            for _ in range(_MAX_STEPS):
                candidate = itr.get_next(datetime)
                if candidate > naive:
                    break
                wall = _resolve(tz, candidate)
                if wall.kind is _Kind.AMBIGUOUS and wall.second > after:
                    best = min(best, wall.second)
                    break
    if best <= after:  # pragma: no cover - defensive
        raise RuntimeError(f"tick {best.isoformat()} is not after {after.isoformat()}")
    return best


def _prev_or_equal(plan: _Plan, moment: datetime) -> datetime | None:
    tz = plan.tz
    local = moment.astimezone(tz)
    naive = local.replace(tzinfo=None)

    best: datetime | None = None
    fold1_hit = False
    itr = croniter(plan.expr, naive + _ONE_MICROSECOND)
    for _ in range(_MAX_STEPS):
        try:
            candidate = itr.get_prev(datetime)
        except CroniterBadDateError:
            break
        wall = _resolve(tz, candidate)
        if wall.kind is _Kind.NORMAL:
            if wall.first <= moment:
                best = wall.first
                break
        elif wall.kind is _Kind.AMBIGUOUS:
            if plan.every_hour and wall.second <= moment:
                best, fold1_hit = wall.second, True
                break
            if wall.first <= moment:
                best = wall.first
                break
        elif not plan.every_hour:
            if wall.first <= moment:
                best = wall.first
                break
        else:
            assert wall.gap_start is not None
            itr = croniter(plan.expr, wall.gap_start)

    # `moment` lies in the second pass of a repeated period: first-pass occurrences of
    # wall-clock times later than `moment`'s wall clock already happened.
    if not fold1_hit and local.fold == 1:
        shift = _fold_shift(local)
        if shift is not None:
            itr = croniter(plan.expr, naive + shift)
            for _ in range(_MAX_STEPS):
                candidate = itr.get_prev(datetime)
                if candidate <= naive:
                    break
                wall = _resolve(tz, candidate)
                if wall.kind is _Kind.AMBIGUOUS and wall.first <= moment:
                    best = wall.first if best is None else max(best, wall.first)
                    break
    return best


# --------------------------------------------------------------------------- public API


def next_tick(rec: Recurrence, after: datetime) -> datetime | None:
    """The first tick strictly after ``after`` (UTC, without delay); None when disabled."""
    after_utc = _as_utc(after, "after")
    plan = _compiled(rec)
    if plan is None:
        return None
    return _next(plan, after_utc)


def next_due(rec: Recurrence, after: datetime) -> tuple[datetime, datetime] | None:
    """``(tick, due)`` of the first tick strictly after ``after``; due = tick + delay."""
    tick = next_tick(rec, after)
    if tick is None:
        return None
    return tick, tick + timedelta(seconds=rec.delay)


def upcoming(rec: Recurrence, start: datetime, count: int) -> list[tuple[datetime, datetime]]:
    """The next ``count`` ``(tick, due)`` pairs strictly after ``start`` (for previews)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ScheduleError(f"count: {count!r} must be a non-negative whole number")
    cursor = _as_utc(start, "start")
    plan = _compiled(rec)
    if plan is None:
        return []
    delay = timedelta(seconds=rec.delay)
    result: list[tuple[datetime, datetime]] = []
    for _ in range(count):
        cursor = _next(plan, cursor)
        result.append((cursor, cursor + delay))
    return result


def last_tick_at_or_before(rec: Recurrence, moment: datetime) -> datetime | None:
    """The latest tick at or before ``moment`` (UTC, without delay); None when disabled."""
    moment_utc = _as_utc(moment, "moment")
    plan = _compiled(rec)
    if plan is None:
        return None
    return _prev_or_equal(plan, moment_utc)


def catch_up(
    rec: Recurrence, next_schedule: datetime | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """Decide what to run after downtime.

    ``next_schedule`` is the template's stored next tick. Returns ``(missed, following)``:
    ``missed`` is the latest tick in ``[next_schedule, now]`` — run it once, however many
    ticks were missed — or None when ``next_schedule`` is None or still in the future;
    ``following`` is the first tick strictly after ``now`` (None when disabled).
    """
    now_utc = _as_utc(now, "now")
    stored = None if next_schedule is None else _as_utc(next_schedule, "next_schedule")
    plan = _compiled(rec)
    if plan is None:
        return None, None
    following = _next(plan, now_utc)
    if stored is None or stored > now_utc:
        return None, following
    latest = _prev_or_equal(plan, now_utc)
    if latest is None or latest < stored:
        return None, following
    return latest, following
