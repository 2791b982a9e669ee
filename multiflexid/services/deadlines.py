"""Reading deadlines: each template's current tick, its tick history, misses in a window.

The *current tick* of a template is its latest tick at or before now. Its state comes from
the tracked row; a tick the tracker has not written yet (it runs in the daemon: the
daemon is down, or the tick came a moment ago) is shown by the clock — ``open`` before
its deadline, ``missed`` after — so the CLI tells the truth while no daemon runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from multiflexid.domain.deadline import Deadline, not_done_in_time, shown_state
from multiflexid.domain.schedule import ScheduleError, last_tick_at_or_before
from multiflexid.presenters import iso
from multiflexid.store.deadlines import recurrence_of, tick_deadline
from multiflexid.store.orm import Company, RunTemplate, RunTemplateTick


def current_ticks(s: Session, rts: Iterable[RunTemplate], now: datetime
                  ) -> dict[int, dict[str, Any] | None]:
    """For each template: its current tick's ``{tick, deadline, state, late, job_id}``;
    None without a deadline or before its first tracked tick."""
    rts = list(rts)
    out: dict[int, dict[str, Any] | None] = {rt.id: None for rt in rts}
    tracked = [rt for rt in rts if rt.deadline_time is not None or rt.deadline_after is not None]
    if not tracked:
        return out
    t = RunTemplateTick
    latest = (select(t.runtemplate_id, func.max(t.tick).label("tick"))
              .where(t.runtemplate_id.in_([rt.id for rt in tracked]), t.tick <= now)
              .group_by(t.runtemplate_id).subquery())
    rows = {row.runtemplate_id: row for row in s.scalars(select(t).join(
        latest, and_(latest.c.runtemplate_id == t.runtemplate_id, latest.c.tick == t.tick)))}
    for rt in tracked:
        out[rt.id] = _current(rt, rows.get(rt.id), now)
    return out


def _current(rt: RunTemplate, row: RunTemplateTick | None, now: datetime
             ) -> dict[str, Any] | None:
    deadline = Deadline.of(rt.deadline_time, rt.deadline_after)
    if deadline is None:
        return None
    current = None
    if rt.active:
        try:
            current = last_tick_at_or_before(recurrence_of(rt), now)
        except ScheduleError:
            current = None
    if current is not None and (row is None or row.tick < current) \
            and rt.deadline_next_tick is not None and current >= rt.deadline_next_tick:
        # Came, and not written yet: what the clock says.
        due = tick_deadline(rt, deadline, current)
        return {"tick": iso(current), "deadline": iso(due), "state": shown_state("open", due, now),
                "late": not_done_in_time("open", due, now), "job_id": None}
    if row is None:
        return None
    return tick_view(row, now)


def tick_view(row: RunTemplateTick, now: datetime) -> dict[str, Any]:
    return {"tick": iso(row.tick), "deadline": iso(row.deadline),
            "state": shown_state(row.state, row.deadline, now),
            "late": not_done_in_time(row.state, row.deadline, now), "job_id": row.job_id}


def history(s: Session, rt_id: int, now: datetime, limit: int = 20) -> list[dict[str, Any]]:
    """The template's tracked ticks, newest first."""
    rows = s.scalars(select(RunTemplateTick).where(RunTemplateTick.runtemplate_id == rt_id)
                     .order_by(RunTemplateTick.tick.desc()).limit(limit))
    return [tick_record(r, now) for r in rows]


def tick_record(row: RunTemplateTick, now: datetime) -> dict[str, Any]:
    """A tracked tick with when it was found missed and settled."""
    return {**tick_view(row, now), "missed_at": iso(row.missed_at),
            "settled_at": iso(row.settled_at)}


def not_done(s: Session, since: datetime, now: datetime, *, company_id: int | None = None,
             runtemplate_id: int | None = None) -> list[dict[str, Any]]:
    """Ticks whose deadline fell in ``[since, now]`` and were not done in time, oldest
    first: missed (also the open ones past their deadline) and failed ones."""
    query = (select(RunTemplateTick, RunTemplate.name, Company.slug)
             .join(RunTemplate, RunTemplate.id == RunTemplateTick.runtemplate_id)
             .join(Company, Company.id == RunTemplateTick.company_id)
             .where(RunTemplateTick.state.in_(("open", "missed", "failed")),
                    RunTemplateTick.deadline >= since, RunTemplateTick.deadline <= now)
             .order_by(RunTemplateTick.deadline))
    if company_id is not None:
        query = query.where(RunTemplateTick.company_id == company_id)
    if runtemplate_id is not None:
        query = query.where(RunTemplateTick.runtemplate_id == runtemplate_id)
    found = [{**tick_view(row, now), "runtemplate_id": row.runtemplate_id, "name": name,
              "company": slug} for row, name, slug in s.execute(query)]
    # Current ticks past their deadline that no tracker wrote (no daemon ran since).
    seen = {(t["runtemplate_id"], t["tick"]) for t in found}
    templates = (select(RunTemplate, Company.slug)
                 .join(Company, Company.id == RunTemplate.company_id)
                 .where(RunTemplate.active.is_(True),
                        (RunTemplate.deadline_time.is_not(None))
                        | (RunTemplate.deadline_after.is_not(None))))
    if company_id is not None:
        templates = templates.where(RunTemplate.company_id == company_id)
    if runtemplate_id is not None:
        templates = templates.where(RunTemplate.id == runtemplate_id)
    rows = s.execute(templates).all()
    current = current_ticks(s, [rt for rt, _slug in rows], now)
    for rt, slug in rows:
        tick = current.get(rt.id)
        if tick and tick["late"] and (rt.id, tick["tick"]) not in seen \
                and tick["deadline"] >= iso(since):
            found.append({**tick, "runtemplate_id": rt.id, "name": rt.name, "company": slug})
    return sorted(found, key=lambda t: t["deadline"])
