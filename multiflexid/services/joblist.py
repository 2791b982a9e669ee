"""Jobs listed on the server: filtered, sorted, searched and keyset-paged (``job.list``,
``multiflexi-cli job list``).

Every filter is part of the query, before any limit: states, company, application,
template, the companies the caller may see, a time range on when jobs were created,
began or ended, and text in their output (store/search.py says what a match is). Sorted
by id, begin, end or duration, either way. Pages are keyset pages: each ends with a
cursor (its last job's sort value and id) and the next page starts after it, so paging
stays right while jobs are added or change. Jobs without the sorted value (not begun,
not ended) come last, by id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Select, and_, cast, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from multiflexi.errors import InvalidInput
from multiflexi.states import JOB_STATES
from multiflexid.presenters import iso, job_dict
from multiflexid.store.orm import Company, Job
from multiflexid.store.search import MAX_LENGTH, MIN_LENGTH, Order, OutputSearch, problem

SORTS = ("id", "begin", "end", "duration")
MAX_TEXT = MAX_LENGTH
MIN_TEXT = MIN_LENGTH
TIME_FIELDS = ("created", "begin", "end")
MAX_LIMIT = 10000


@dataclass(frozen=True)
class JobFilter:
    """Which jobs: every given condition holds (``states``: any of them)."""

    states: tuple[str, ...] = ()
    company_id: int | None = None
    app_id: int | None = None
    runtemplate_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    time_field: str = "created"  # what since/until bound: created, begin or end
    text: str | None = None  # in the output
    visible: Collection[int] | None = None  # the companies the caller may see (None: all)


@dataclass
class JobPage:
    jobs: list[Job]
    next_cursor: str | None  # None: this is the last page
    matches: dict[int, tuple[int, str]] = field(default_factory=dict)  # id -> (seq, line)
    companies: dict[int, str] = field(default_factory=dict)  # id -> slug

    def items(self) -> list[dict[str, Any]]:
        """The jobs as job.list and `job list --format json` show them."""
        out = []
        for job in self.jobs:
            item = {**job_dict(job), "company": self.companies.get(job.company_id)}
            if job.id in self.matches:
                seq, line = self.matches[job.id]
                item["match"] = {"seq": seq, "line": line}
            out.append(item)
        return out


def _params(field: str) -> str:
    return f"params.{field}"


def check(f: JobFilter, sort: str = "id", desc: bool = True, cursor: str | None = None,
          named: Callable[[str], str] = _params) -> None:
    """Refuse what cannot be listed, naming the field as the caller knows it
    (``params.text`` on the socket, ``--grep`` in the CLI)."""
    def bad(name: str, message: str) -> InvalidInput:
        return InvalidInput(f"{named(name)}: {message}", {"field": named(name)})

    for state in f.states:
        if state not in JOB_STATES:
            raise bad("state", f"{state!r} is not one of {' '.join(JOB_STATES)}")
    if sort not in SORTS:
        raise bad("sort", f"{sort!r} is not one of {', '.join(SORTS)}")
    if f.time_field not in TIME_FIELDS:
        raise bad("time_field", f"{f.time_field!r} is not one of {', '.join(TIME_FIELDS)}")
    if f.since is not None and f.until is not None and f.until <= f.since:
        raise bad("until", f"must be later than since ({iso(f.since)})")
    if f.text is not None and (why := problem(f.text)):
        raise bad("text", why)
    parse_cursor(cursor, sort, desc, named)


def list_jobs(s: Session, f: JobFilter, *, sort: str = "id", desc: bool = True,
              cursor: str | None = None, limit: int = 50) -> JobPage:
    """One page of the jobs ``f`` selects, in ``sort`` order, after ``cursor``."""
    check(f, sort, desc, cursor)
    if f.text is not None and s.get_bind().dialect.name == "postgresql" \
            and not s.in_transaction():
        # A text search reads the index and the indexer's queue in several statements:
        # one snapshot for all (the indexer moves a chunk from one to the other in one
        # commit; statements each with their own could see it in neither).
        s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    limit = max(1, min(limit, MAX_LIMIT))
    key = sort_key(s, sort)
    after = parse_cursor(cursor, sort, desc)
    order = Order(by_id=sort == "id", desc=desc,
                  after_id=after[1] if after is not None else None,
                  order_by=_order_by(key, sort, desc),
                  keyset=None if after is None else _keyset(key, sort, desc, *after))
    jobs = _filtered(f)
    if f.text is not None:
        search = OutputSearch(s.get_bind().dialect.name)
        rows = search.page(s, jobs, f.text, order, limit + 1)
    else:
        if order.keyset is not None:
            jobs = jobs.where(order.keyset)
        rows = list(s.scalars(jobs.order_by(*order.order_by).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    page = JobPage(rows, make_cursor(s, rows[-1], sort, desc) if more else None)
    if f.text is not None and rows:
        page.matches = OutputSearch(s.get_bind().dialect.name).first_lines(
            s, [j.id for j in rows], f.text)
    ids = {j.company_id for j in rows}
    if ids:
        page.companies = dict(s.execute(select(Company.id, Company.slug)
                                        .where(Company.id.in_(ids))).all())
    return page


def _filtered(f: JobFilter) -> Select[Any]:
    query = select(Job)
    if f.states:
        query = query.where(Job.state.in_(f.states))
    if f.company_id is not None:
        query = query.where(Job.company_id == f.company_id)
    if f.app_id is not None:
        query = query.where(Job.app_id == f.app_id)
    if f.runtemplate_id is not None:
        query = query.where(Job.runtemplate_id == f.runtemplate_id)
    if f.visible is not None:  # only the companies the caller may see
        query = query.where(Job.company_id.in_(sorted(f.visible)))
    moment = {"created": Job.created_at, "begin": Job.begin, "end": Job.end}[f.time_field]
    if f.since is not None:
        query = query.where(moment >= f.since)
    if f.until is not None:
        query = query.where(moment < f.until)
    return query


# --- sorting and keyset paging -------------------------------------------------------------


def sort_key(s: Session, sort: str) -> Any:
    if sort == "duration":  # seconds; NULL until the job has ended
        if s.get_bind().dialect.name == "sqlite":
            return (func.julianday(Job.end) - func.julianday(Job.begin)) * 86400.0
        return cast(func.extract("epoch", Job.end - Job.begin), Float)
    return {"id": Job.id, "begin": Job.begin, "end": Job.end}[sort]


def _order_by(key: ColumnElement[Any], sort: str, desc: bool) -> list[Any]:
    if sort == "id":
        return [Job.id.desc() if desc else Job.id.asc()]
    return [(key.desc() if desc else key.asc()).nulls_last(),
            Job.id.desc() if desc else Job.id.asc()]


def _keyset(key: ColumnElement[Any], sort: str, desc: bool, value: Any,
            last_id: int) -> ColumnElement[bool]:
    """Jobs after (value, last_id) in the order; NULL values come last."""
    after_id = Job.id < last_id if desc else Job.id > last_id
    if sort == "id":
        return after_id
    if value is None:
        return and_(key.is_(None), after_id)
    beyond = key < value if desc else key > value
    return or_(beyond, and_(key == value, after_id), key.is_(None))


def make_cursor(s: Session, job: Job, sort: str, desc: bool) -> str:
    """Where the page after ``job`` starts: ``sort~order~value~id`` (opaque to clients)."""
    value: Any = None
    if sort in ("begin", "end"):
        value = iso_micro(getattr(job, sort))
    elif sort == "duration":
        value = s.scalar(select(sort_key(s, sort)).where(Job.id == job.id))
        value = None if value is None else repr(float(value))
    return f"{sort}~{'desc' if desc else 'asc'}~{value or ''}~{job.id}"


def iso_micro(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def parse_cursor(cursor: str | None, sort: str, desc: bool,
                 named: Callable[[str], str] = _params) -> tuple[Any, int] | None:
    """(sort value, id) of a cursor from :func:`make_cursor`; it must be of this order."""
    if cursor is None:
        return None
    parts = cursor.split("~")
    order = "desc" if desc else "asc"
    bad = InvalidInput(f"{named('cursor')}: {cursor!r} is not a cursor of a job.list page "
                       f"sorted by {sort} {order}", {"field": named("cursor")})
    if len(parts) != 4 or parts[0] != sort or parts[1] != order or not parts[3].isdigit():
        raise bad
    raw, last_id = parts[2], int(parts[3])
    if sort == "id" or raw == "":
        return None, last_id
    try:
        value: Any = float(raw) if sort == "duration" else datetime.fromisoformat(raw)
    except ValueError:
        raise bad from None
    if isinstance(value, datetime) and value.tzinfo is None:
        raise bad
    return value, last_id
