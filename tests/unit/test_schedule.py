"""Scheduling math: interval codes, cron, time zones, DST, catch-up (no real clock)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from multiflexid.domain import schedule
from multiflexid.domain.schedule import (
    INTERVALS,
    Recurrence,
    ScheduleError,
    catch_up,
    detect_system_timezone,
    interval_cron,
    last_tick_at_or_before,
    next_due,
    next_tick,
    upcoming,
)

PRAGUE = ZoneInfo("Europe/Prague")
NEW_YORK = ZoneInfo("America/New_York")
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz)


def ticks_between(rec: Recurrence, start: datetime, end: datetime) -> list[datetime]:
    """All ticks t with start <= t < end, by repeated next_tick."""
    out: list[datetime] = []
    cursor = start - timedelta(microseconds=1)
    while True:
        tick = next_tick(rec, cursor)
        assert tick is not None
        if tick >= end:
            return out
        out.append(tick)
        cursor = tick


def local_day(tz: ZoneInfo, day: date) -> tuple[datetime, datetime]:
    """[local midnight of day, local midnight of the next day) as UTC instants."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC)
    return start, end


@pytest.fixture(autouse=True)
def _fresh_system_zone() -> Iterator[None]:
    schedule.system_timezone.cache_clear()
    yield
    schedule.system_timezone.cache_clear()


# ----------------------------------------------------------------------------- interval codes


def test_interval_names_match_upstream_schedule_types() -> None:
    assert INTERVALS == {
        "i": "minutely",
        "h": "hourly",
        "d": "daily",
        "w": "weekly",
        "m": "monthly",
        "y": "yearly",
        "c": "custom",
        "n": "disabled",
    }


@pytest.mark.parametrize(
    ("interv", "cron", "expected"),
    [
        ("i", None, "* * * * *"),
        ("h", None, "0 * * * *"),
        ("d", None, "0 0 * * *"),
        ("w", None, "0 0 * * 1"),
        ("m", None, "0 0 1 * *"),
        ("y", None, "0 0 1 1 *"),
        ("d", "15 3 * * *", "0 0 * * *"),  # a leftover cron does not change a fixed interval
        ("c", " 15 3 * * * ", "15 3 * * *"),
        ("c", "", None),
        ("c", "   ", None),
        ("c", None, None),
        ("n", "15 3 * * *", None),
    ],
)
def test_interval_cron(interv: str, cron: str | None, expected: str | None) -> None:
    assert interval_cron(interv, cron) == expected


@pytest.mark.parametrize(
    ("rec", "schedule_type"),
    [
        (Recurrence("i"), "minutely"),
        (Recurrence("h"), "hourly"),
        (Recurrence("d"), "daily"),
        (Recurrence("w"), "weekly"),
        (Recurrence("m"), "monthly"),
        (Recurrence("y"), "yearly"),
        (Recurrence("c", "*/5 * * * *"), "custom"),
        (Recurrence("c", ""), "disabled"),
        (Recurrence("n"), "disabled"),
    ],
)
def test_schedule_type(rec: Recurrence, schedule_type: str) -> None:
    assert rec.schedule_type == schedule_type
    assert rec.enabled is (schedule_type != "disabled")


# Wednesday 2026-05-13 10:17:42 UTC
AFTER = utc(2026, 5, 13, 10, 17, 42)


@pytest.mark.parametrize(
    ("interv", "expected"),
    [
        ("i", utc(2026, 5, 13, 10, 18)),
        ("h", utc(2026, 5, 13, 11, 0)),
        ("d", utc(2026, 5, 14, 0, 0)),
        ("w", utc(2026, 5, 18, 0, 0)),  # the next Monday
        ("m", utc(2026, 6, 1, 0, 0)),
        ("y", utc(2027, 1, 1, 0, 0)),
    ],
)
def test_each_interval_in_utc(interv: str, expected: datetime) -> None:
    assert next_tick(Recurrence(interv, timezone="UTC"), AFTER) == expected


@pytest.mark.parametrize(
    ("interv", "expected"),
    [
        ("i", utc(2026, 5, 13, 10, 18)),
        ("h", utc(2026, 5, 13, 11, 0)),
        ("d", utc(2026, 5, 13, 22, 0)),  # 2026-05-14 00:00 CEST
        ("w", utc(2026, 5, 17, 22, 0)),  # Monday 2026-05-18 00:00 CEST
        ("m", utc(2026, 5, 31, 22, 0)),  # 2026-06-01 00:00 CEST
        ("y", utc(2026, 12, 31, 23, 0)),  # 2027-01-01 00:00 CET
    ],
)
def test_each_interval_in_prague(interv: str, expected: datetime) -> None:
    tick = next_tick(Recurrence(interv, timezone="Europe/Prague"), AFTER)
    assert tick == expected
    assert tick is not None and tick.tzinfo is not None and tick.utcoffset() == timedelta(0)


def test_tick_is_strictly_after_and_input_zone_does_not_matter() -> None:
    rec = Recurrence("d", timezone="Europe/Prague")
    tick = utc(2026, 5, 13, 22, 0)
    assert next_tick(rec, tick) == utc(2026, 5, 14, 22, 0)
    assert next_tick(rec, tick - timedelta(microseconds=1)) == tick
    same_instant_in_prague = tick.astimezone(PRAGUE)
    result = next_tick(rec, same_instant_in_prague)
    assert result == utc(2026, 5, 14, 22, 0)
    assert result is not None and result.tzinfo is not None and result.utcoffset() == timedelta(0)


def test_disabled_has_no_ticks() -> None:
    for rec in (Recurrence("n"), Recurrence("c", ""), Recurrence("c", None, "Europe/Prague")):
        assert next_tick(rec, AFTER) is None
        assert next_due(rec, AFTER) is None
        assert upcoming(rec, AFTER, 5) == []
        assert last_tick_at_or_before(rec, AFTER) is None
        assert catch_up(rec, utc(2026, 5, 1), AFTER) == (None, None)


def test_custom_cron_weekdays_in_prague() -> None:
    rec = Recurrence("c", "15 8 * * 1-5", "Europe/Prague")
    friday_evening = utc(2026, 5, 15, 18, 0)
    assert [t for t, _ in upcoming(rec, friday_evening, 3)] == [
        utc(2026, 5, 18, 6, 15),  # Monday 08:15 CEST
        utc(2026, 5, 19, 6, 15),
        utc(2026, 5, 20, 6, 15),
    ]


def test_custom_cron_alias() -> None:
    rec = Recurrence("c", "@daily", "UTC")
    assert rec.schedule_type == "custom"
    assert next_tick(rec, AFTER) == utc(2026, 5, 14)


def test_delay_is_added_to_each_tick() -> None:
    rec = Recurrence("d", timezone="Europe/Prague", delay=300)
    assert next_due(rec, AFTER) == (utc(2026, 5, 13, 22, 0), utc(2026, 5, 13, 22, 5))
    assert upcoming(rec, AFTER, 2) == [
        (utc(2026, 5, 13, 22, 0), utc(2026, 5, 13, 22, 5)),
        (utc(2026, 5, 14, 22, 0), utc(2026, 5, 14, 22, 5)),
    ]
    # the tick, not the due time, decides what comes next
    assert next_tick(rec, utc(2026, 5, 13, 22, 2)) == utc(2026, 5, 14, 22, 0)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("rec", "message"),
    [
        (
            Recurrence("c", "61 * * * *"),
            "cron: '61 * * * *' is not a valid cron expression: ",
        ),
        (Recurrence("c", "* * *"), "cron: '* * *' is not a valid cron expression: "),
        (
            Recurrence("c", "0 0 * * * 30"),
            "cron: '0 0 * * * 30' is not a valid cron expression: expected 5 fields",
        ),
        (Recurrence("c", "every day"), "cron: 'every day' is not a valid cron expression"),
        (Recurrence("c", "@reboot"), "cron: '@reboot' is not a valid cron expression"),
        (Recurrence("c", "0 0 31 2 *"), "cron: '0 0 31 2 *' never matches any date"),
        (Recurrence("d", timezone="Mars/Base"), "timezone: 'Mars/Base' is not a known IANA"),
        (Recurrence("d", timezone="../etc/passwd"), "timezone: '../etc/passwd' is not a known"),
        (Recurrence("x"), "interv: 'x' is not a known interval code (one of c, d, h, i, m, n"),
        (Recurrence("d", delay=-1), "delay: -1 must not be negative"),
        (Recurrence("d", delay="60"), "delay: '60' is not a whole number of seconds"),  # type: ignore[arg-type]
    ],
)
def test_validation_errors_name_field_and_value(rec: Recurrence, message: str) -> None:
    with pytest.raises(ScheduleError) as excinfo:
        rec.validate()
    assert str(excinfo.value).startswith(message)
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(ScheduleError, match=r"^(cron|timezone|interv|delay): "):
        next_tick(rec, AFTER)


def test_valid_recurrences_pass() -> None:
    Recurrence("c", "*/15 8-17 * * mon-fri", "America/New_York", delay=90).validate()
    Recurrence("d", "not a cron at all").validate()  # the cron only matters for `c`
    Recurrence("n", timezone="").validate()


def test_naive_datetimes_are_rejected() -> None:
    rec = Recurrence("d", timezone="UTC")
    naive = datetime(2026, 5, 13, 10, 0)
    with pytest.raises(ScheduleError, match=r"^after: 2026-05-13T10:00:00 is naive"):
        next_tick(rec, naive)
    with pytest.raises(ScheduleError, match=r"^start: .* is naive"):
        upcoming(rec, naive, 1)
    with pytest.raises(ScheduleError, match=r"^moment: .* is naive"):
        last_tick_at_or_before(rec, naive)
    with pytest.raises(ScheduleError, match=r"^now: .* is naive"):
        catch_up(rec, None, naive)
    with pytest.raises(ScheduleError, match=r"^next_schedule: .* is naive"):
        catch_up(rec, naive, AFTER)
    with pytest.raises(ScheduleError, match=r"^count: -1 must be"):
        upcoming(rec, AFTER, -1)


# ----------------------------------------------------------------------------- DST, daily 02:30


DAILY_0230_PRAGUE = Recurrence("c", "30 2 * * *", "Europe/Prague")
DAILY_0230_NEW_YORK = Recurrence("c", "30 2 * * *", "America/New_York")


@pytest.mark.parametrize(
    ("rec", "tz", "day", "expected_utc", "expected_local"),
    [
        # spring forward: 02:30 does not exist; runs when the gap ends (03:00 local)
        (DAILY_0230_PRAGUE, PRAGUE, date(2026, 3, 29), utc(2026, 3, 29, 1, 0), "03:00+0200"),
        # fall back: 02:30 happens twice; runs at the first one (CEST)
        (DAILY_0230_PRAGUE, PRAGUE, date(2026, 10, 25), utc(2026, 10, 25, 0, 30), "02:30+0200"),
        (DAILY_0230_NEW_YORK, NEW_YORK, date(2026, 3, 8), utc(2026, 3, 8, 7, 0), "03:00-0400"),
        # in New York the repeated hour is 01:00-01:59, so 02:30 exists once (EST)
        (DAILY_0230_NEW_YORK, NEW_YORK, date(2026, 11, 1), utc(2026, 11, 1, 7, 30), "02:30-0500"),
        (
            Recurrence("c", "30 1 * * *", "America/New_York"),
            NEW_YORK,
            date(2026, 11, 1),
            utc(2026, 11, 1, 5, 30),  # 01:30 EDT, not again at 01:30 EST
            "01:30-0400",
        ),
    ],
)
def test_daily_job_runs_exactly_once_on_dst_days(
    rec: Recurrence, tz: ZoneInfo, day: date, expected_utc: datetime, expected_local: str
) -> None:
    start, end = local_day(tz, day)
    assert ticks_between(rec, start, end) == [expected_utc]
    assert expected_utc.astimezone(tz).strftime("%H:%M%z") == expected_local
    # and the days around it run once each, at the cron's wall-clock time
    wall = f"{int(cron_hour(rec)):02d}:30"
    for neighbour in (day - timedelta(days=1), day + timedelta(days=1)):
        n_start, n_end = local_day(tz, neighbour)
        ticks = ticks_between(rec, n_start, n_end)
        assert [t.astimezone(tz).strftime("%H:%M") for t in ticks] == [wall]


def cron_hour(rec: Recurrence) -> str:
    assert rec.cron is not None
    return rec.cron.split()[1]


def test_fixed_hour_job_does_not_rerun_in_the_second_pass() -> None:
    # 2026-10-25 02:10 CET (01:10 UTC) is in the repeated hour, after the 02:30 CEST run
    second_pass = utc(2026, 10, 25, 1, 10)
    assert second_pass.astimezone(PRAGUE).fold == 1
    assert next_tick(DAILY_0230_PRAGUE, second_pass) == utc(2026, 10, 26, 1, 30)
    every_20_min_at_2 = Recurrence("c", "*/20 2 * * *", "Europe/Prague")
    assert next_tick(every_20_min_at_2, second_pass) == utc(2026, 10, 26, 1, 0)
    # an every-hour cron does run in the second pass
    assert next_tick(Recurrence("c", "30 * * * *", "Europe/Prague"), second_pass) == utc(
        2026, 10, 25, 1, 30
    )


def test_fixed_hour_gap_tick_and_the_tick_after_the_gap_are_one_tick() -> None:
    # 02:30 (nonexistent) and 03:00 both map to 01:00 UTC on 2026-03-29: one run only
    rec = Recurrence("c", "30 2 * * *", "Europe/Prague")
    both = Recurrence("c", "0,30 2,3 * * *", "Europe/Prague")
    start, end = local_day(PRAGUE, date(2026, 3, 29))
    assert ticks_between(rec, start, end) == [utc(2026, 3, 29, 1, 0)]
    assert ticks_between(both, start, end) == [utc(2026, 3, 29, 1, 0), utc(2026, 3, 29, 1, 30)]


# ----------------------------------------------------------------------------- DST, hourly


@pytest.mark.parametrize(
    ("tz", "day", "real_hours"),
    [
        (PRAGUE, date(2026, 3, 29), 23),
        (PRAGUE, date(2026, 10, 25), 25),
        (NEW_YORK, date(2026, 3, 8), 23),
        (NEW_YORK, date(2026, 11, 1), 25),
        (PRAGUE, date(2026, 5, 13), 24),
    ],
)
@pytest.mark.parametrize("cron", [None, "30 * * * *", "0 0-23 * * *"])
def test_hourly_runs_once_per_real_hour(
    tz: ZoneInfo, day: date, real_hours: int, cron: str | None
) -> None:
    rec = Recurrence("h", timezone=tz.key) if cron is None else Recurrence("c", cron, tz.key)
    start, end = local_day(tz, day)
    assert end - start == timedelta(hours=real_hours)
    ticks = ticks_between(rec, start, end)
    assert len(ticks) == real_hours
    assert all(b - a == HOUR for a, b in pairwise(ticks))
    minute = 30 if cron == "30 * * * *" else 0
    assert ticks[0] == start + timedelta(minutes=minute)


def test_hourly_in_the_repeated_prague_hour_runs_in_both_folds() -> None:
    rec = Recurrence("h", timezone="Europe/Prague")
    ticks = [t for t, _ in upcoming(rec, utc(2026, 10, 24, 23, 30), 3)]
    assert ticks == [utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 1, 0), utc(2026, 10, 25, 2, 0)]
    assert [t.astimezone(PRAGUE).strftime("%H:%M%z") for t in ticks] == [
        "02:00+0200",
        "02:00+0100",
        "03:00+0100",
    ]


def test_minutely_counts_real_minutes_on_dst_days() -> None:
    rec = Recurrence("i", timezone="Europe/Prague")
    for day, minutes in ((date(2026, 3, 29), 23 * 60), (date(2026, 10, 25), 25 * 60)):
        start, end = local_day(PRAGUE, day)
        ticks = ticks_between(rec, start, end)
        assert len(ticks) == minutes
        assert ticks[0] == start and ticks[-1] == end - MINUTE
        assert all(b - a == MINUTE for a, b in pairwise(ticks))


def test_fixed_hour_every_minute_of_2am_runs_only_first_pass() -> None:
    rec = Recurrence("c", "* 2 * * *", "Europe/Prague")
    start, end = local_day(PRAGUE, date(2026, 10, 25))
    ticks = ticks_between(rec, start, end)
    assert len(ticks) == 60
    assert ticks[0] == utc(2026, 10, 25, 0, 0) and ticks[-1] == utc(2026, 10, 25, 0, 59)


# ------------------------------------------------------------------------ weekly/monthly/yearly


def test_weekly_across_spring_forward_stays_at_local_midnight_monday() -> None:
    rec = Recurrence("w", timezone="Europe/Prague")
    ticks = [t for t, _ in upcoming(rec, utc(2026, 3, 18), 3)]
    assert ticks == [utc(2026, 3, 22, 23, 0), utc(2026, 3, 29, 22, 0), utc(2026, 4, 5, 22, 0)]
    assert {t.astimezone(PRAGUE).strftime("%A %H:%M") for t in ticks} == {"Monday 00:00"}


def test_monthly_over_a_year_is_first_of_each_month_local_midnight() -> None:
    rec = Recurrence("m", timezone="America/New_York")
    ticks = [t for t, _ in upcoming(rec, utc(2026, 1, 15), 12)]
    locals_ = [t.astimezone(NEW_YORK) for t in ticks]
    assert [(d.year, d.month, d.day, d.hour, d.minute) for d in locals_] == [
        (2026 + (m > 12), (m - 1) % 12 + 1, 1, 0, 0) for m in range(2, 14)
    ]
    assert ticks[0] == utc(2026, 2, 1, 5, 0)  # EST
    assert ticks[3] == utc(2026, 5, 1, 4, 0)  # EDT


def test_yearly_is_new_year_local_midnight() -> None:
    rec = Recurrence("y", timezone="Europe/Prague", delay=60)
    assert upcoming(rec, utc(2026, 5, 13), 3) == [
        (utc(2026, 12, 31, 23, 0), utc(2026, 12, 31, 23, 1)),
        (utc(2027, 12, 31, 23, 0), utc(2027, 12, 31, 23, 1)),
        (utc(2028, 12, 31, 23, 0), utc(2028, 12, 31, 23, 1)),
    ]
    assert last_tick_at_or_before(rec, utc(2026, 5, 13)) == utc(2025, 12, 31, 23, 0)


def test_midnight_that_does_not_exist_runs_when_the_gap_ends() -> None:
    # America/Santiago skips 2026-09-06 00:00-00:59: the daily job runs at 01:00 local
    rec = Recurrence("d", timezone="America/Santiago")
    ticks = [t for t, _ in upcoming(rec, utc(2026, 9, 4, 12), 3)]
    assert ticks == [utc(2026, 9, 5, 4, 0), utc(2026, 9, 6, 4, 0), utc(2026, 9, 7, 3, 0)]
    santiago = ZoneInfo("America/Santiago")
    assert ticks[1].astimezone(santiago).strftime("%Y-%m-%d %H:%M") == "2026-09-06 01:00"


def test_leap_day_cron() -> None:
    rec = Recurrence("c", "0 12 29 2 *", "UTC")
    assert next_tick(rec, AFTER) == utc(2028, 2, 29, 12, 0)
    assert last_tick_at_or_before(rec, AFTER) == utc(2024, 2, 29, 12, 0)


@pytest.mark.parametrize(("tz", "spring_day"), [(PRAGUE, 29), (NEW_YORK, 8)])
def test_a_year_of_daily_0230_is_365_distinct_increasing_days(
    tz: ZoneInfo, spring_day: int
) -> None:
    rec = Recurrence("c", "30 2 * * *", tz.key)
    start = local(tz, 2026, 1, 1, 0, 0)
    pairs = upcoming(rec, start, 365)
    ticks = [t for t, _ in pairs]
    assert all(a < b for a, b in pairwise(ticks))
    local_dates = [t.astimezone(tz).date() for t in ticks]
    assert len(set(local_dates)) == 365
    assert local_dates[0] == date(2026, 1, 1) and local_dates[-1] == date(2026, 12, 31)
    times = {t.astimezone(tz).date(): t.astimezone(tz).strftime("%H:%M") for t in ticks}
    assert times.pop(date(2026, 3, spring_day)) == "03:00"
    assert set(times.values()) == {"02:30"}
    assert all(t.astimezone(tz).fold == 0 for t in ticks)


# ----------------------------------------------------------------------------- last tick / catch-up


def test_last_tick_at_or_before() -> None:
    rec = Recurrence("c", "30 2 * * *", "Europe/Prague")
    tick = utc(2026, 5, 13, 0, 30)
    assert last_tick_at_or_before(rec, tick) == tick
    assert last_tick_at_or_before(rec, tick - timedelta(microseconds=1)) == utc(2026, 5, 12, 0, 30)
    # on the fall-back day the tick is the first 02:30; the second 02:30 is not a tick
    assert last_tick_at_or_before(rec, utc(2026, 10, 25, 1, 45)) == utc(2026, 10, 25, 0, 30)
    assert last_tick_at_or_before(rec, utc(2026, 10, 25, 0, 29)) == utc(2026, 10, 24, 0, 30)
    # on the spring-forward day the tick is at the end of the gap
    assert last_tick_at_or_before(rec, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 29, 1, 0)
    assert last_tick_at_or_before(rec, utc(2026, 3, 29, 0, 59)) == utc(2026, 3, 28, 1, 30)


def test_last_tick_in_the_second_pass_of_a_repeated_hour() -> None:
    hourly = Recurrence("c", "40 * * * *", "Europe/Prague")
    # 02:20 CET (second pass): the last tick is 02:40 CEST, a *later* wall-clock time
    assert last_tick_at_or_before(hourly, utc(2026, 10, 25, 1, 20)) == utc(2026, 10, 25, 0, 40)
    assert last_tick_at_or_before(hourly, utc(2026, 10, 25, 1, 40)) == utc(2026, 10, 25, 1, 40)
    fixed = Recurrence("c", "40 2 * * *", "Europe/Prague")
    assert last_tick_at_or_before(fixed, utc(2026, 10, 25, 1, 20)) == utc(2026, 10, 25, 0, 40)
    assert last_tick_at_or_before(fixed, utc(2026, 10, 25, 1, 59)) == utc(2026, 10, 25, 0, 40)


def test_catch_up_after_three_days_down_runs_the_latest_missed_tick_once() -> None:
    rec = Recurrence("c", "30 2 * * *", "Europe/Prague", delay=600)
    stored_next = utc(2026, 5, 10, 0, 30)  # 2026-05-10 02:30 CEST, never run
    now = utc(2026, 5, 13, 9, 0)  # back up 3 days later
    assert catch_up(rec, stored_next, now) == (utc(2026, 5, 13, 0, 30), utc(2026, 5, 14, 0, 30))


def test_catch_up_hourly_after_three_days_down() -> None:
    rec = Recurrence("h", timezone="America/New_York")
    missed, following = catch_up(rec, utc(2026, 5, 10, 7, 0), utc(2026, 5, 13, 7, 59, 59))
    assert (missed, following) == (utc(2026, 5, 13, 7, 0), utc(2026, 5, 13, 8, 0))


def test_catch_up_without_downtime() -> None:
    rec = Recurrence("d", timezone="UTC")
    now = utc(2026, 5, 13, 9, 0)
    assert catch_up(rec, utc(2026, 5, 14), now) == (None, utc(2026, 5, 14))
    assert catch_up(rec, None, now) == (None, utc(2026, 5, 14))
    # the stored tick is exactly now: it is due now, and runs once
    assert catch_up(rec, utc(2026, 5, 13), utc(2026, 5, 13)) == (utc(2026, 5, 13), utc(2026, 5, 14))


def test_catch_up_with_a_stale_stored_tick_but_no_real_tick_missed() -> None:
    # the template was switched to yearly after its next tick was stored
    rec = Recurrence("y", timezone="UTC")
    assert catch_up(rec, utc(2026, 5, 12), utc(2026, 5, 13)) == (None, utc(2027, 1, 1))


# ----------------------------------------------------------------------------- system zone


def test_system_zone_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    schedule.system_timezone.cache_clear()
    rec = Recurrence("d")
    assert next_tick(rec, utc(2026, 1, 10, 12)) == utc(2026, 1, 11, 5, 0)
    assert next_tick(rec, utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 4, 0)
    assert next_tick(Recurrence("d", timezone=""), utc(2026, 7, 10, 12)) == utc(2026, 7, 11, 4)


def _zoneinfo_dir() -> Path:
    for base in ("/usr/share/zoneinfo", "/usr/lib/zoneinfo"):
        if (Path(base) / "Europe" / "Prague").is_file():
            return Path(base)
    pytest.skip("no system zoneinfo database")


def test_detect_system_timezone_sources(tmp_path: Path) -> None:
    zdir = _zoneinfo_dir()
    missing = tmp_path / "missing"
    etc_timezone = tmp_path / "timezone"
    etc_timezone.write_text("America/New_York\n", encoding="utf-8")
    link = tmp_path / "localtime"
    os.symlink(zdir / "Asia" / "Tokyo", link)

    def key(environ: dict[str, str], tzfile: Path = missing, localtime: Path = missing) -> str:
        zone = detect_system_timezone(environ, tzfile, localtime)
        return str(getattr(zone, "key", zone))

    assert key({"TZ": "Europe/Prague"}, etc_timezone, link) == "Europe/Prague"
    assert key({"TZ": ":Europe/Prague"}) == "Europe/Prague"
    assert key({"TZ": str(zdir / "Europe" / "Prague")}) == "Europe/Prague"
    assert key({"TZ": ""}, etc_timezone, link) == "UTC"
    # a POSIX rule string is not an IANA name: fall through to the files
    assert key({"TZ": "CET-1CEST,M3.5.0,M10.5.0/3"}, etc_timezone, link) == "Asia/Tokyo"
    assert key({}, etc_timezone, link) == "Asia/Tokyo"
    assert key({}, etc_timezone, missing) == "America/New_York"
    assert key({}, missing, missing) == "UTC"

    copied = tmp_path / "localtime-copy"
    copied.write_bytes((zdir / "Asia" / "Tokyo").read_bytes())
    zone = detect_system_timezone({}, missing, copied)
    assert utc(2026, 1, 1).astimezone(zone).utcoffset() == timedelta(hours=9)


# ---------------------------------------------------------------------- brute-force cross-check


def _reference_ticks(
    expr: str, every_hour: bool, tz: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """The documented rule, by scanning every real UTC minute (independent of the module)."""
    minutes, hours = (set(f) for f in croniter.expand(expr)[0][:2])
    hours = set(range(24)) if hours == {"*"} else hours
    minutes = set(range(60)) if minutes == {"*"} else minutes

    def match(wall: datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    out = []
    u = start
    while u < end:
        here = u.astimezone(tz)
        wall = here.replace(tzinfo=None)
        before = (u - MINUTE).astimezone(tz).replace(tzinfo=None)
        is_tick = match(wall)
        if not every_hour:
            second_pass = here.replace(fold=0).astimezone(UTC) != u
            if second_pass:
                is_tick = False
            skipped = wall - before - MINUTE  # wall-clock minutes that never happened
            if skipped > timedelta(0):
                gap = (before + MINUTE * k for k in range(1, skipped // MINUTE + 1))
                is_tick = is_tick or any(match(w) for w in gap)
        if is_tick:
            out.append(u)
        u += MINUTE
    return out


TRANSITIONS = [
    ("Europe/Prague", utc(2026, 3, 29, 1, 0)),
    ("Europe/Prague", utc(2026, 10, 25, 1, 0)),
    ("America/New_York", utc(2026, 3, 8, 7, 0)),
    ("America/New_York", utc(2026, 11, 1, 6, 0)),
    ("Australia/Lord_Howe", utc(2026, 4, 4, 15, 0)),  # back 30 minutes
    ("Australia/Lord_Howe", utc(2026, 10, 3, 15, 30)),  # forward 30 minutes
    ("America/Santiago", utc(2026, 4, 5, 3, 0)),  # back at midnight
    ("America/Santiago", utc(2026, 9, 6, 4, 0)),  # 00:00-00:59 does not exist
]
CRONS = [
    ("30 2 * * *", False),
    ("0 0 * * *", False),
    ("15 1,2,3 * * *", False),
    ("*/20 2 * * *", False),
    ("0 */2 * * *", False),
    ("45 23 * * *", False),
    ("0 * * * *", True),
    ("10,40 * * * *", True),
    ("*/15 * * * *", True),
]


@pytest.mark.parametrize(("zone", "transition"), TRANSITIONS)
def test_matches_brute_force_reference_around_transitions(zone: str, transition: datetime) -> None:
    tz = ZoneInfo(zone)
    before = (transition - MINUTE).astimezone(tz).utcoffset()
    assert before != transition.astimezone(tz).utcoffset()
    start, end = transition - timedelta(hours=14), transition + timedelta(hours=14)
    for expr, every_hour in CRONS:
        rec = Recurrence("c", expr, zone)
        expected = _reference_ticks(expr, every_hour, tz, start, end)
        assert expected, expr
        assert ticks_between(rec, start, end) == expected, expr
        for prev, tick in zip([None, *expected], expected, strict=False):
            assert last_tick_at_or_before(rec, tick) == tick, (expr, tick)
            assert last_tick_at_or_before(rec, tick + timedelta(seconds=30)) == tick
            if prev is not None:
                assert last_tick_at_or_before(rec, tick - timedelta(seconds=1)) == prev
