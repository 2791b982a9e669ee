"""Deadlines on a real database with an injectable clock: each tick of a template with a
deadline ends fulfilled, fulfilled late, failed or missed — also while no daemon ran and
when its job was blocked — on SQLite and PostgreSQL, across a DST day in Europe/Prague.

Time is simulated as in test_scheduler: the scheduler's tick and the deadline tracker's
sweep are called with the instants the daemon would use.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from multiflexid.core import Core
from multiflexid.domain.deadline import (
    Deadline,
    DeadlineError,
    TickLate,
    TickMissed,
    parse_span,
)
from multiflexid.services import deadlines as views
from multiflexid.services import lifecycle
from multiflexid.store.orm import Job, RunTemplate, RunTemplateTick
from tests.support.factory import make_template, overdue_template, shell_app
from tests.support.ticks import DAY, PRAGUE, Clock, at, daily


def _ticks(core: Core, rt_id: int) -> list[tuple[str, str, str]]:
    """(tick, deadline, state) in Prague time, oldest first."""
    with core.db.read_session() as s:
        rows = s.scalars(select(RunTemplateTick).where(RunTemplateTick.runtemplate_id == rt_id)
                         .order_by(RunTemplateTick.tick))
        return [(r.tick.astimezone(PRAGUE).strftime("%m-%d %H:%M"),
                 r.deadline.astimezone(PRAGUE).strftime("%m-%d %H:%M"), r.state) for r in rows]


def _current(core: Core, rt_id: int, now: datetime) -> dict | None:
    with core.db.read_session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        return views.current_ticks(s, [rt], now)[rt_id]


def test_done_before_the_deadline_is_fulfilled(core: Core) -> None:
    clock = Clock(core)
    rt_id = daily(core, at(4))
    [job] = clock.tick(at(5, 0))
    assert _current(core, rt_id, at(5, 1))["state"] == "open"
    assert clock.claim(at(5, 0)) == [job]
    clock.finish(job, at(5, 20))
    clock.sweep(at(7, 1))  # the deadline passes: nothing more happens to a fulfilled tick
    assert _ticks(core, rt_id) == [("05-04 05:00", "05-04 07:00", "fulfilled")]
    assert clock.kinds() == [("TickFulfilled", "05-04 05:00")]
    now = _current(core, rt_id, at(8))
    assert now is not None and (now["state"], now["late"], now["job_id"]) == \
        ("fulfilled", False, job)


def test_not_done_by_the_deadline_is_missed_then_fulfilled_late(core: Core) -> None:
    clock = Clock(core)
    rt_id = daily(core, at(4))
    [job] = clock.tick(at(5, 0))
    assert clock.claim(at(5, 0)) == [job]  # it runs... and runs
    clock.sweep(at(6, 59))
    assert _ticks(core, rt_id)[0][2] == "open"
    clock.sweep(at(7, 0))
    assert _ticks(core, rt_id)[0][2] == "missed"
    assert [type(e) for e in clock.events] == [TickMissed]
    late = _current(core, rt_id, at(7, 1))
    assert late is not None and (late["state"], late["late"]) == ("missed", True)
    clock.finish(job, at(7, 40))
    assert _ticks(core, rt_id) == [("05-04 05:00", "05-04 07:00", "fulfilled_late")]
    assert [type(e) for e in clock.events] == [TickMissed, TickLate]
    assert clock.events[1].previous == "missed" and clock.events[1].job_id == job
    with core.db.read_session() as s:  # a miss stays counted after the late success
        row = s.scalar(select(RunTemplateTick))
        assert row is not None and row.missed_at == at(7, 0)


def test_a_success_after_the_deadline_before_any_sweep_is_late(core: Core) -> None:
    clock = Clock(core)
    rt_id = daily(core, at(4))
    with core.db.session() as s:  # the scheduler ticks; no tracker runs until later
        [job] = lifecycle.tick(s, core.transitions, at(5, 0)).created
    assert clock.claim(at(5, 0)) == [job]
    clock.finish(job, at(7, 5))
    assert _ticks(core, rt_id) == [("05-04 05:00", "05-04 07:00", "fulfilled_late")]
    clock.sweep(at(7, 6))
    assert clock.kinds() == [("TickLate", "05-04 05:00")]


def test_a_failure_is_failed_and_a_retry_counts_toward_the_same_tick(core: Core) -> None:
    clock = Clock(core)
    no_retry = daily(core, at(4))
    retried = make_template(core, name="with retries", interv="c", cron="0 5 * * *",
                            timezone="Europe/Prague", now=at(4), deadline_time="07:00",
                            max_attempts=2, retry_min_gap=600)
    jobs = clock.tick(at(5, 0))
    assert len(jobs) == 2 and sorted(clock.claim(at(5, 0))) == sorted(jobs)
    with core.db.read_session() as s:
        first = {s.get(Job, j).runtemplate_id: j for j in jobs}  # type: ignore[union-attr]
    clock.finish(first[no_retry], at(5, 10), exitcode=1)
    clock.finish(first[retried], at(5, 10), exitcode=1)
    assert _ticks(core, no_retry)[0][2] == "failed"
    assert _ticks(core, retried)[0][2] == "open"  # its retry is queued
    [retry] = clock.claim(at(5, 21))
    clock.finish(retry, at(5, 22))
    assert _ticks(core, retried)[0][2] == "fulfilled"
    clock.sweep(at(7, 30))
    assert _ticks(core, no_retry)[0][2] == "failed"  # failed stays failed, not also missed
    failed = _current(core, no_retry, at(7, 30))
    assert failed is not None and failed["late"] is True  # ...but it is not done in time
    assert _current(core, no_retry, at(6))["late"] is False  # type: ignore[index]


def test_a_run_now_after_a_failure_still_fulfills_the_tick(core: Core) -> None:
    clock = Clock(core)
    rt_id = daily(core, at(4))
    [job] = clock.tick(at(5, 0))
    clock.claim(at(5, 0))
    clock.finish(job, at(5, 5), exitcode=1)
    assert _ticks(core, rt_id)[0][2] == "failed"
    from multiflexid.services import runtemplates

    with core.db.session() as s:  # the admin fixes the config and runs it again
        rerun = runtemplates.run_now(s, core.transitions, core.box, rt_id, {},
                                     launched_by="alice", schedule_type="adhoc-cli",
                                     now=at(6, 0))[0].id
    assert clock.claim(at(6, 0)) == [rerun]
    clock.finish(rerun, at(6, 10))
    assert _ticks(core, rt_id)[0][2] == "fulfilled"
    assert [e.state for e in clock.events] == ["failed", "fulfilled"]


def test_missed_while_no_daemon_ran_is_recorded_when_it_comes_back(core: Core) -> None:
    clock = Clock(core)
    rt_id = daily(core, at(4))
    back = at(9, 0, DAY + timedelta(days=3))  # down from Monday 04:00 until Thursday 09:00
    [job] = clock.tick(back)  # the scheduler catches up once; the tracker sees 4 ticks
    assert _ticks(core, rt_id) == [
        ("05-04 05:00", "05-04 07:00", "missed"), ("05-05 05:00", "05-05 07:00", "missed"),
        ("05-06 05:00", "05-06 07:00", "missed"), ("05-07 05:00", "05-07 07:00", "missed")]
    assert [k for k, _ in clock.kinds()] == ["TickMissed"] * 4
    assert all(e.at == back for e in clock.events)  # recorded when it came back
    with core.db.read_session() as s:
        caught_up = s.get(Job, job)
        assert caught_up is not None and caught_up.schedule_type == "catch-up"
    clock.claim(back)
    clock.finish(job, back + timedelta(minutes=3))  # the catch-up run is Thursday's, late
    assert [t[2] for t in _ticks(core, rt_id)] == ["missed"] * 3 + ["fulfilled_late"]


def test_blocked_is_missed_at_the_deadline(core: Core) -> None:
    clock = Clock(core)
    rt_id = daily(core, at(4))
    [job] = clock.tick(at(5, 0))
    clock.claim(at(5, 0))
    with core.db.session() as s:  # required configuration missing: nothing launched
        core.transitions.block(s, job, at(5, 0), "missing required ABRAFLEXI_URL")
    clock.sweep(at(6, 0))
    assert _ticks(core, rt_id)[0][2] == "open"  # someone may still fix it in time
    clock.sweep(at(7, 0))
    assert _ticks(core, rt_id)[0][2] == "missed"
    assert clock.kinds() == [("TickMissed", "05-04 05:00")]


def test_a_span_after_the_due_time(core: Core) -> None:
    clock = Clock(core)
    rt_id = make_template(core, interv="h", timezone="Europe/Prague", delay=600, now=at(4),
                          deadline_after="90m")
    jobs = clock.tick(at(5, 10))
    assert len(jobs) == 1
    assert _ticks(core, rt_id) == [("05-04 05:00", "05-04 06:40", "open")]  # 05:10 + 1h30
    clock.tick(at(6, 10))
    assert [t[1] for t in _ticks(core, rt_id)] == ["05-04 06:40", "05-04 07:40"]
    clock.sweep(at(6, 41))
    assert [t[2] for t in _ticks(core, rt_id)] == ["missed", "open"]


@pytest.mark.parametrize(("day", "deadline", "expected"), [
    # 2026-03-29: 02:00-02:59 does not exist; a 02:30 deadline is when the clock jumps
    (datetime(2026, 3, 29), "02:30", datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    # 2026-10-25: 02:00-02:59 happens twice; a 02:30 deadline is the first one
    (datetime(2026, 10, 25), "02:30", datetime(2026, 10, 25, 0, 30, tzinfo=UTC)),
    (datetime(2026, 3, 29), "+3h", datetime(2026, 3, 29, 2, 0, tzinfo=UTC)),  # elapsed time
    (datetime(2026, 10, 25), "07:00", datetime(2026, 10, 25, 6, 0, tzinfo=UTC)),  # CET again
])
def test_dst_days_in_prague(core: Core, day: datetime, deadline: str,
                            expected: datetime) -> None:
    """A daily job at midnight Prague time on both DST days: each tick gets the deadline
    the wall clock says, and a success just before / just after it is on time / late."""
    clock = Clock(core)
    midnight = day.replace(tzinfo=PRAGUE)
    spec = {"deadline_after": deadline[1:]} if deadline.startswith("+") else \
        {"deadline_time": deadline}
    rt_id = make_template(core, name=f"{day.date()} {deadline}", interv="d",
                          timezone="Europe/Prague", now=midnight - timedelta(hours=2), **spec)
    [job] = clock.tick(midnight.astimezone(UTC) + timedelta(seconds=1))
    with core.db.read_session() as s:
        row = s.scalar(select(RunTemplateTick).where(RunTemplateTick.runtemplate_id == rt_id))
        assert row is not None
        assert row.tick == midnight.astimezone(UTC)
        assert row.deadline == expected
    clock.claim(midnight.astimezone(UTC))
    clock.finish(job, expected - timedelta(seconds=1))
    assert _ticks(core, rt_id)[0][2] == "fulfilled"
    other = make_template(core, name=f"late {day.date()} {deadline}", interv="d",
                          timezone="Europe/Prague", now=midnight - timedelta(hours=2), **spec)
    [late] = [j for j in clock.tick(midnight.astimezone(UTC) + timedelta(seconds=2))]
    clock.claim(midnight.astimezone(UTC) + timedelta(seconds=2))
    clock.finish(late, expected + timedelta(seconds=1))
    assert _ticks(core, other)[0][2] == "fulfilled_late"


def test_changing_the_deadline_starts_tracking_afresh(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    clock = Clock(core)
    rt_id = daily(core, at(4))
    clock.tick(at(5, 0))
    from multiflexid.services import runtemplates

    with core.db.session() as s:
        rt = runtemplates.get_runtemplate(s, rt_id)
        runtemplates.update_runtemplate(s, rt, at(5, 30), deadline_time="08:00")
    assert _ticks(core, rt_id) == []  # the open tick was tracked against 07:00: forgotten
    clock.sweep(at(7, 30))
    assert clock.events == []
    with core.db.session() as s:
        rt = runtemplates.get_runtemplate(s, rt_id)
        runtemplates.update_runtemplate(s, rt, at(5, 30), name="renamed")
        assert rt.deadline_next_tick == at(5, 0, DAY + timedelta(days=1))  # unchanged


@pytest.mark.parametrize(("text", "field"), [
    ("25:00", "deadline"), ("7", "deadline"), ("soon", "deadline"),
])
def test_bad_times_of_day_name_the_field(text: str, field: str) -> None:
    from multiflexid.domain.deadline import parse_time_of_day

    with pytest.raises(DeadlineError, match=f"^{field}: '{text}' is not a time of day"):
        parse_time_of_day(text)


def test_spans() -> None:
    assert [parse_span(t) for t in ("2h", "90m", "1h30m", "45s", "1d", "3600")] == \
        [7200, 5400, 5400, 45, 86400, 3600]
    for bad in ("2x", "0", "-1h", "h", "400d"):
        with pytest.raises(DeadlineError, match=r"^deadline_after: "):
            parse_span(bad)
    assert Deadline(after=5400).describe() == "+1h30m"


def test_cli_sets_shows_and_lists_late_templates(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    make_template(core, app_doc=shell_app(), name="seed")  # the app and the company
    r = mfcli("runtemplate", "create", "--app", "1", "--company", "acme", "--name", "bank",
              "--interv", "d", "--deadline", "7:00", "--format", "json")
    assert r.code == 0, r.err
    assert (r.json["deadline"], r.json["deadline_time"]) == ("07:00", "07:00")
    bad = mfcli("runtemplate", "update", "--id", str(r.json["id"]), "--deadline-after", "2x")
    assert bad.code == 1 and "deadline_after: '2x' is not a duration" in bad.err
    both = mfcli("runtemplate", "update", "--id", str(r.json["id"]), "--deadline", "07:00",
                 "--deadline-after", "2h")
    assert both.code == 1 and "not both" in both.err
    # A template whose ticks came while nothing ran: its current tick is missed.
    late_id = overdue_template(core)
    listed = mfcli("runtemplate", "list", "--late", "--format", "json").json
    assert [t["id"] for t in listed] == [late_id]
    assert listed[0]["tick"]["state"] == "missed" and listed[0]["tick"]["late"] is True
    text = mfcli("runtemplate", "list").out
    assert "MISSED by" in text and "from next tick (07:00)" in text
    shown = mfcli("runtemplate", "show", "--id", str(late_id)).out
    assert "deadline" in shown and "+30m" in shown
    cleared = mfcli("runtemplate", "update", "--id", str(late_id), "--no-deadline",
                    "--format", "json").json
    assert (cleared["deadline"], cleared["tick"]) == (None, None)


def test_a_deadline_given_a_moment_ago_is_not_missed_by_a_stale_cache(core: Core) -> None:
    """The end hook reads which templates have a deadline at most every few seconds (no
    query per job end for those without); a job that ended in between is still counted,
    by the tracker."""
    clock = Clock(core)
    core.deadlines.cache_seconds = 3600
    rt_id = make_template(core, name="bank import", interv="c", cron="0 5 * * *",
                          timezone="Europe/Prague", now=at(3))
    from multiflexid.services import runtemplates

    with core.db.session() as s:  # a job ends: the hook learns "no template has one"
        rerun = runtemplates.run_now(s, core.transitions, core.box, rt_id, {},
                                     launched_by="alice", schedule_type="adhoc-cli",
                                     now=at(3))[0].id
    clock.claim(at(3))
    clock.finish(rerun, at(3, 1))
    with core.db.session() as s:  # then it gets a deadline (the CLI, another process)
        rt = runtemplates.get_runtemplate(s, rt_id)
        runtemplates.update_runtemplate(s, rt, at(4), deadline_time="07:00")
    [job] = clock.tick(at(5, 0))
    clock.claim(at(5, 0))
    clock.finish(job, at(5, 30))  # the hook does not know yet: the tick stays open
    assert _ticks(core, rt_id)[0][2] == "open"
    clock.sweep(at(7, 0))
    assert _ticks(core, rt_id) == [("05-04 05:00", "05-04 07:00", "fulfilled")]
    assert clock.kinds() == [("TickFulfilled", "05-04 05:00")]
