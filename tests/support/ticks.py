"""Simulated time for deadline tests: the scheduler's tick and the deadline tracker's sweep
called with the instants the daemon would use, on a real database (see
tests/integration/test_deadlines.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from multiflexid.core import Core
from multiflexid.domain.deadline import TickSettled
from multiflexid.services import lifecycle
from tests.support.factory import make_template, run_to_end

PRAGUE = ZoneInfo("Europe/Prague")
DAY = datetime(2026, 5, 4, tzinfo=PRAGUE)  # a Monday, CEST (UTC+2)


def at(hh: int, mm: int = 0, day: datetime = DAY) -> datetime:
    """``hh:mm`` on the template's clock (Prague), as the UTC instant the daemon sees."""
    return day.replace(hour=hh, minute=mm).astimezone(UTC)


def daily(core: Core, now: datetime, **values: object) -> int:
    """The accountant's daily bank import: 05:00 Prague time, done by 07:00."""
    values.setdefault("deadline_time", "07:00")
    values.setdefault("name", "bank import")
    return make_template(core, interv="c", cron="0 5 * * *", timezone="Europe/Prague",
                         now=now, **values)


class Clock:
    """Drives the scheduler and the deadline tracker the way the daemon does, with a
    recorder of the tick events every transaction emits (as the daemon's listeners get
    them after the commit)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.events: list[TickSettled] = []
        core.deadlines.on_tick.append(lambda _s, e: self.events.append(e))
        core.deadlines.cache_seconds = 0  # templates get deadlines mid-test

    def tick(self, now: datetime) -> list[int]:
        with self.core.db.session() as s:
            created = lifecycle.tick(s, self.core.transitions, now).created
        self.sweep(now)
        return created

    def sweep(self, now: datetime) -> None:
        with self.core.db.session() as s:
            self.core.deadlines.sweep(s, now)

    def claim(self, now: datetime) -> list[int]:
        with self.core.db.session() as s:
            return self.core.transitions.claim(s, now, "n1", 10)

    def finish(self, job_id: int, now: datetime, exitcode: int = 0) -> None:
        with self.core.db.session() as s:
            run_to_end(self.core, s, job_id, now, exitcode=exitcode)

    def kinds(self) -> list[tuple[str, str]]:
        return [(type(e).__name__, e.tick.astimezone(PRAGUE).strftime("%m-%d %H:%M"))
                for e in self.events]
