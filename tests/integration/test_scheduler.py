"""The scheduler against a real database with an injectable clock.

Every test runs on SQLite and on PostgreSQL. Time is simulated: the scheduler's tick is
called with the instants the daemon would use, so a whole DST day passes in a second.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from multiflexid.core import Core
from multiflexid.domain.jobstate import verdict
from multiflexid.services import jobs, lifecycle
from multiflexid.store.orm import Job, RunTemplate, Schedule
from tests.support.factory import make_template, run_to_end


def _run_ticks(core: Core, start: datetime, end: datetime, step: timedelta) -> list[int]:
    """Tick like the daemon: at most ``step`` apart, and one second after each due time."""
    created: list[int] = []
    now = start
    while now <= end:
        with core.db.session() as s:
            result = lifecycle.tick(s, core.transitions, now)
        created += result.created
        # Jobs finish at once, so the no-overlap rules never hide a tick here.
        with core.db.session() as s:
            for job_id in core.transitions.claim(s, now, "n1", 100):
                run_to_end(core, s, job_id, now)
        nxt = now + step
        if result.next_due is not None and now < result.next_due + timedelta(seconds=1) < nxt:
            nxt = result.next_due + timedelta(seconds=1)
        now = nxt
    return created


def _jobs(core: Core) -> list[Job]:
    with core.db.read_session() as s:
        return list(s.scalars(select(Job).order_by(Job.id)))


@pytest.mark.parametrize(
    ("interv", "cron", "window", "expected"),
    [
        ("i", None, timedelta(hours=1), 60),
        ("h", None, timedelta(days=1), 24),
        ("d", None, timedelta(days=1), 1),
        ("c", "*/15 * * * *", timedelta(days=1), 96),
        ("c", "30 2 * * *", timedelta(days=1), 1),
        ("n", None, timedelta(days=1), 0),
    ],
)
def test_each_interval_makes_one_job_per_tick(
    core: Core, interv: str, cron: str | None, window: timedelta, expected: int
) -> None:
    start = datetime(2026, 5, 4, 0, 0, 30, tzinfo=UTC)
    make_template(core, interv=interv, cron=cron, timezone="UTC", now=start)
    step = timedelta(seconds=25) if interv == "i" else timedelta(minutes=10)
    _run_ticks(core, start, start + window, step)
    rows = _jobs(core)
    assert len(rows) == expected
    assert len({j.tick for j in rows}) == expected  # one job per distinct tick
    if rows:
        names = {"i": "minutely", "h": "hourly", "d": "daily", "c": "custom"}
        assert {j.schedule_type for j in rows} == {names[interv]}


@pytest.mark.parametrize(("interv", "start", "days", "expected"), [
    ("w", datetime(2026, 5, 4, 0, 30, tzinfo=UTC), 21, 3),   # Mondays
    ("m", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 95, 3),   # Feb, Mar, Apr 1st
    ("y", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 366, 1),  # 2027-01-01
])
def test_weekly_monthly_yearly(
    core: Core, interv: str, start: datetime, days: int, expected: int
) -> None:
    make_template(core, interv=interv, timezone="UTC", now=start)
    _run_ticks(core, start, start + timedelta(days=days), timedelta(days=2))
    ticks = [j.tick for j in _jobs(core)]
    assert len(ticks) == expected
    if interv == "w":
        assert all(t is not None and t.weekday() == 0 and t.hour == 0 for t in ticks)
    if interv == "m":
        assert all(t is not None and t.day == 1 for t in ticks)


def test_delay_moves_the_due_time_not_the_tick(core: Core) -> None:
    start = datetime(2026, 5, 4, 0, 30, tzinfo=UTC)
    make_template(core, interv="h", delay=90, timezone="UTC", now=start)
    with core.db.session() as s:
        created = lifecycle.tick(s, core.transitions,
                                 datetime(2026, 5, 4, 1, 0, 5, tzinfo=UTC)).created
    assert len(created) == 1
    with core.db.read_session() as s:
        job = s.get(Job, created[0])
        assert job is not None
        after = s.scalar(select(Schedule.after).where(Schedule.job_id == job.id))
    assert job.tick == datetime(2026, 5, 4, 1, 0, tzinfo=UTC)
    assert after == datetime(2026, 5, 4, 1, 1, 30, tzinfo=UTC)
    with core.db.session() as s:  # not claimable before its delay has passed
        assert core.transitions.claim(s, datetime(2026, 5, 4, 1, 1, 0, tzinfo=UTC), "n1", 5) == []
        assert core.transitions.claim(s, datetime(2026, 5, 4, 1, 1, 31, tzinfo=UTC), "n1", 5) \
            == created


@pytest.mark.parametrize(("zone", "spring", "fall"), [
    ("Europe/Prague", datetime(2026, 3, 29), datetime(2026, 10, 25)),
    ("America/New_York", datetime(2026, 3, 8), datetime(2026, 11, 1)),
])
def test_daily_0230_runs_once_on_both_dst_days(
    core: Core, zone: str, spring: datetime, fall: datetime
) -> None:
    tz = ZoneInfo(zone)
    for day in (spring, fall):
        start = (day - timedelta(days=1)).replace(hour=12, tzinfo=tz).astimezone(UTC)
        rt_id = make_template(core, name=f"{zone}-{day.date()}", interv="c", cron="30 2 * * *",
                              timezone=zone, now=start)
        _run_ticks(core, start, start + timedelta(days=2), timedelta(hours=1))
        with core.db.read_session() as s:
            ticks = list(s.scalars(select(Job.tick).where(Job.runtemplate_id == rt_id)
                                   .order_by(Job.id)))
        local_days = [t.astimezone(tz).date() for t in ticks if t is not None]
        assert local_days == [day.date(), (day + timedelta(days=1)).date()], ticks
        first = ticks[0].astimezone(tz)
        if day == spring:  # 02:30 does not exist: it runs when the clock jumps to 03:00
            assert (first.hour, first.minute) == (3, 0)
        else:  # 02:30 happens twice: only the first one
            assert (first.hour, first.minute, first.fold) == (2, 30, 0)


def test_hourly_across_fall_back_runs_every_real_hour(core: Core) -> None:
    tz = ZoneInfo("Europe/Prague")
    start = datetime(2026, 10, 24, 22, 30, tzinfo=UTC)  # 00:30 local on the fall-back day
    make_template(core, interv="h", timezone="Europe/Prague", now=start)
    _run_ticks(core, start, start + timedelta(hours=25), timedelta(minutes=10))
    ticks = [j.tick for j in _jobs(core)]
    assert len(ticks) == 25  # 25 real hours in that local day window
    assert len(set(ticks)) == 25
    assert sum(1 for t in ticks if t is not None and t.astimezone(tz).hour == 2) == 2


def test_catch_up_after_downtime_runs_once_and_says_so(core: Core) -> None:
    start = datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
    rt_id = make_template(core, interv="h", timezone="UTC", now=start)
    later = datetime(2026, 5, 4, 9, 20, tzinfo=UTC)  # down for three days
    with core.db.session() as s:
        result = lifecycle.tick(s, core.transitions, later)
    assert len(result.created) == 1
    with core.db.read_session() as s:
        job = s.get(Job, result.created[0])
        rt = s.get(RunTemplate, rt_id)
    assert job is not None and rt is not None
    assert job.schedule_type == "catch-up"
    assert job.tick == datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # the latest missed tick
    assert rt.next_schedule == datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
    with core.db.session() as s:  # ticking again at once adds nothing
        assert lifecycle.tick(s, core.transitions, later + timedelta(seconds=1)).created == []


def test_one_job_per_tick_is_a_database_guarantee(core: Core) -> None:
    start = datetime(2026, 5, 1, 0, 30, tzinfo=UTC)
    rt_id = make_template(core, interv="h", timezone="UTC", now=start)
    tick = datetime(2026, 5, 1, 1, 0, tzinfo=UTC)
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        jobs.create_job(s, core.transitions, rt, schedule_type="hourly",
                        launched_by="scheduler", after=tick, tick=tick, box=core.box)
    with pytest.raises(IntegrityError), core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        jobs.create_job(s, core.transitions, rt, schedule_type="hourly",
                        launched_by="scheduler", after=tick, tick=tick, box=core.box)
    # A scheduler that runs the same tick again (another node, a retry) makes nothing new.
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        rt.next_schedule = tick
    with core.db.session() as s:
        result = lifecycle.tick(s, core.transitions, tick + timedelta(seconds=2))
    assert result.created == []
    assert len(_jobs(core)) == 1


def test_no_overlap_and_at_most_one_waiting(core: Core) -> None:
    start = datetime(2026, 5, 1, 0, 59, tzinfo=UTC)
    rt_id = make_template(core, interv="i", timezone="UTC", now=start)
    t1 = datetime(2026, 5, 1, 1, 0, 1, tzinfo=UTC)
    with core.db.session() as s:
        first = lifecycle.tick(s, core.transitions, t1).created
    with core.db.session() as s:
        assert core.transitions.claim(s, t1, "n1", 10) == first  # claimed: held by n1
        core.transitions.start(s, first[0], "n1", t1)
    with core.db.session() as s:  # next minute: waits behind the running one
        second = lifecycle.tick(s, core.transitions, t1 + timedelta(minutes=1)).created
    with core.db.session() as s:  # and the minute after: coalesced, nothing new
        assert lifecycle.tick(s, core.transitions, t1 + timedelta(minutes=2)).created == []
    with core.db.read_session() as s:
        waiting = s.get(Job, second[0])
        assert waiting is not None and waiting.state == "pending"
    with core.db.session() as s:  # not started while the first one runs
        assert core.transitions.claim(s, t1 + timedelta(minutes=2), "n1", 10) == []
    with core.db.session() as s:
        core.transitions.end(s, first[0], verdict("exited", 0, None, None),
                             t1 + timedelta(minutes=2))
    with core.db.session() as s:
        assert core.transitions.claim(s, t1 + timedelta(minutes=2, seconds=1), "n1",
                                      10) == second
    with core.db.read_session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None and rt.successful_jobs_count == 1


def test_adhoc_jobs_of_one_template_never_overlap_either(core: Core) -> None:
    rt_id = make_template(core, interv="n")
    now = datetime.now(UTC)
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        ids = [jobs.create_job(s, core.transitions, rt, schedule_type="adhoc",
                               launched_by="t", after=now, box=core.box).id for _ in range(3)]
    with core.db.session() as s:
        assert core.transitions.claim(s, now, "n1", 10) == ids[:1]
    with core.db.session() as s:
        assert core.transitions.claim(s, now, "n1", 10) == []


def test_tick_cost_is_independent_of_templates_not_due(core: Core) -> None:
    """The due query is an index range: it reads only due rows (checked by counting the
    rows the query returns, and that an index exists on (active, next_schedule))."""
    from sqlalchemy import inspect

    with core.db.read_session() as s:
        bind = s.get_bind()
        indexes = inspect(bind).get_indexes("runtemplate")
    assert any(ix["column_names"] == ["active", "next_schedule"] for ix in indexes)
