"""The one place a job's state is written: each transition of ``domain.jobstate`` as one
guarded statement.

Every transition is ``UPDATE job SET state = <to> ... WHERE id IN (...) AND state IN
(<allowed from>) RETURNING ...``, the states taken from ``domain.jobstate.TRANSITIONS``; a
job that was not in an allowed state comes back as :class:`IllegalTransition` (for one
job) or in the :class:`Batch`'s ``skipped`` with the state it was in (for several: the
caller logs or acts on them), never silently overwritten. The same statements serve
SQLite and PostgreSQL.

Every way into a final state (end, cancel, lose, block) goes through :meth:`_ended`,
the one path that records an end: it counts the job on its template, queues the next
attempt when the retry policy allows one, and emits one :class:`JobEnded` per job — to
the in-transaction subscribers (``on_end``: rows they add commit with the end, an
outbox) and, after the commit, to whoever reads ``session.info["events"]`` (the daemon's
database thread hands them to the event loop).

Jobs are created here too (one by one by "run now" and retries, in bulk by a scheduler
tick), so the queue and the job rows always agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

from sqlalchemy import (
    Dialect,
    Integer,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from multiflexi.errors import Conflict
from multiflexi.states import FAILURE_STATES, HELD_STATES
from multiflexid.domain.appdef import ExitCodeDef
from multiflexid.domain.jobstate import (
    TRANSITIONS,
    IllegalTransition,
    JobEnded,
    Verdict,
    check,
    leads_to,
    should_retry,
)
from multiflexid.domain.retry import RETRYABLE_STATES, retry_gap

from .db import transaction_memo
from .orm import (
    JOBS,
    RUNTEMPLATES,
    SCHEDULE,
    Application,
    Company,
    Credential,
    Job,
    RunTemplate,
    RunTemplateCredential,
    Schedule,
    as_loaded,
)
from .types import held_state, ids_param, in_ids

# Called with the jobs ended by one statement, inside its transaction.
EndHook = Callable[[Session, list[JobEnded]], None]
T = TypeVar("T")

# PostgreSQL channel every multiflexid LISTENs on: "work arrived" (queued job, cancel).
CHANNEL = "multiflexi_jobs"


def notify_nodes(s: Session) -> None:
    """Wake waiting nodes when this transaction commits (PostgreSQL; SQLite has one node,
    which polls its own database file). Once per transaction: the daemon's writer
    commits many changes together, and one notification wakes the nodes for all."""
    if s.bind is None or s.bind.dialect.name != "postgresql":
        return
    told = transaction_memo(s, "notified")
    if not told:
        s.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        told[CHANNEL] = True


def _postgresql(s: Session) -> bool:
    return s.bind is not None and s.bind.dialect.name == "postgresql"


def _ids() -> Any:
    return bindparam("ids", expanding=True)


# What an ended job tells its subscribers.
_ENDED_COLUMNS = (JOBS.c.id, JOBS.c.runtemplate_id, JOBS.c.company_id, JOBS.c.app_id,
                  JOBS.c.attempt, JOBS.c.node, JOBS.c.launched_by, JOBS.c.schedule_type,
                  JOBS.c.begin, JOBS.c.end, JOBS.c.exitcode, JOBS.c.reason, JOBS.c.state)


def _guarded(transition: str, ids: Any = None) -> Any:
    """``UPDATE job ... WHERE id IN :ids AND state IN (<the transition's sources>)``."""
    return update(JOBS).where(JOBS.c.id.in_(ids if ids is not None else _ids()),
                              _state_check(transition))


def _state_check(transition: str) -> Any:
    """The job is in a state ``transition`` starts from — checked on each row found by its
    id, never a way to find rows: written so that no index of ``state`` applies
    (``state || ''``). Else a generic plan PostgreSQL made while the table was small and
    unanalyzed takes the state index, and a claim of two jobs reads every queued one."""
    return JOBS.c.state.concat("").in_(TRANSITIONS[transition].sources)


def _guarded_one(transition: str) -> Any:
    """``UPDATE job ... WHERE id = :job_id AND state IN (<the transition's sources>)``."""
    return update(JOBS).where(JOBS.c.id == bindparam("job_id"),
                              JOBS.c.state.in_(TRANSITIONS[transition].sources))


def _sql_states(states: Iterable[str]) -> str:
    """States as an SQL list for hand-written statements (our own names, no input)."""
    return ", ".join(f"'{state}'" for state in states)


@dataclass(frozen=True)
class Batch(Generic[T]):
    """What a transition asked of several jobs did: ``done`` (what each job that took it
    gives back) and ``skipped``, the jobs that were not in a state it may start from, with
    the state each was in (None: no such job) — left as they were, never overwritten."""

    transition: str
    done: list[T] = field(default_factory=list)
    skipped: dict[int, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        return describe_skipped(self.skipped)


def describe_skipped(skipped: dict[int, str | None]) -> str:
    """Skipped jobs for a log line: "job 5 is running, job 9 is gone"."""
    return ", ".join(f"job {j} is {st or 'gone'}" for j, st in skipped.items())


@dataclass(frozen=True)
class Retried:
    """The next attempt a retry queued."""

    job_id: int
    attempt: int
    note: str  # what the ended job's reason says of it


# Built once: constructing a statement costs more than running it (these run per job).
_START = (_guarded_one("start").where(JOBS.c.node == bindparam("by"))
          .values(state=leads_to("start"), begin=bindparam("now"), updated_at=bindparam("now"))
          .returning(JOBS.c.id))
_COUNT = (update(RUNTEMPLATES).where(RUNTEMPLATES.c.id == bindparam("rt_id"))
          .values(successful_jobs_count=RUNTEMPLATES.c.successful_jobs_count
                  + bindparam("ok", type_=Integer),
                  failed_jobs_count=RUNTEMPLATES.c.failed_jobs_count
                  + bindparam("bad", type_=Integer),
                  last_success_at=func.coalesce(
                      bindparam("at", type_=RUNTEMPLATES.c.last_success_at.type),
                      RUNTEMPLATES.c.last_success_at),
                  updated_at=RUNTEMPLATES.c.updated_at))  # counting is no change
_LAUNCHED = update(JOBS).where(JOBS.c.id == bindparam("job_id")).values(
    command=bindparam("command"), env=bindparam("env"), pid=bindparam("pid"),
    begin=func.coalesce(bindparam("begin", type_=JOBS.c.begin.type), JOBS.c.begin))

# All the ends of a commit in one statement: the jobs' values as one JSON array (a
# constant statement whatever their number: prepared once, one round trip).
_ENDING = (("e_id", "integer"), ("e_state", "varchar"), ("e_end", "timestamptz"),
           ("e_code", "integer"), ("e_reason", "varchar"), ("e_launched", "boolean"),
           ("e_command", "json"), ("e_env", "json"), ("e_pid", "integer"),
           ("e_begin", "timestamptz"))
_ENDED_NAMES = ", ".join(f'"{c.name}"' for c in _ENDED_COLUMNS)


def _end_many_statement(postgresql: bool) -> Any:
    if postgresql:
        endings = ("json_to_recordset(CAST(:rows AS json)) AS e("
                   + ", ".join(f"{name} {kind}" for name, kind in _ENDING) + ")")
    else:
        endings = ("(SELECT " + ", ".join(f"json_extract(value, '$.{name}') AS {name}"
                                          for name, _kind in _ENDING)
                   + " FROM json_each(:rows)) AS e")
    ended = f"""
        UPDATE job SET state = e_state, "end" = e_end, exitcode = e_code, updated_at = e_end,
               reason = coalesce(e_reason, reason),
               command = CASE WHEN e_launched THEN e_command ELSE command END,
               env = CASE WHEN e_launched THEN e_env ELSE env END,
               pid = CASE WHEN e_launched THEN e_pid ELSE pid END,
               "begin" = coalesce(e_begin, "begin")
          FROM {endings}
         WHERE id = e_id AND state IN ({_sql_states(TRANSITIONS["end"].sources)})
        RETURNING {_ENDED_NAMES}"""
    if postgresql:  # and the counts on their templates, in the same statement
        ended = f"""
        WITH ended AS ({ended}),
        counted AS (
            UPDATE runtemplate
               SET successful_jobs_count = successful_jobs_count + c.ok,
                   failed_jobs_count = failed_jobs_count + c.bad,
                   last_success_at = coalesce(c.last_ok, last_success_at)
              FROM (SELECT runtemplate_id AS rt,
                           count(*) FILTER (WHERE state = 'succeeded') AS ok,
                           count(*) FILTER (WHERE state <> 'succeeded') AS bad,
                           max("end") FILTER (WHERE state = 'succeeded') AS last_ok
                      FROM ended
                     WHERE state IN ({_sql_states(("succeeded", *RETRYABLE_STATES))})
                     GROUP BY runtemplate_id) AS c
             WHERE id = c.rt),
        -- a job of one of their templates waited for this end: the nodes are told
        -- (notify_nodes, within the statement; a volatile CTE runs once)
        told AS (
            SELECT pg_notify('{CHANNEL}', '') FROM ended
             WHERE EXISTS (SELECT 1 FROM schedule q
                            WHERE q.runtemplate_id = ended.runtemplate_id)
             LIMIT 1)
        SELECT * FROM ended WHERE (SELECT count(*) FROM told) >= 0"""
    return text(ended).columns(*_ENDED_COLUMNS)


_END_MANY = {False: _end_many_statement(False), True: _end_many_statement(True)}


def _endings_json(endings: Sequence[Ending], dialect: Dialect) -> str:
    """The rows of :data:`_END_MANY`: timestamps as the dialect stores them."""
    if dialect.name == "postgresql":
        def stamp(at: datetime | None) -> Any:
            return at.isoformat() if at is not None else None
    else:
        stored = JOBS.c.end.type.dialect_impl(dialect).bind_processor(dialect)
        assert stored is not None

        def stamp(at: datetime | None) -> Any:
            return stored(at)
    rows = []
    for e in endings:
        launch = e.launch or {}
        rows.append({
            "e_id": e.job_id, "e_state": e.verdict.state, "e_end": stamp(e.at),
            "e_code": e.verdict.exitcode, "e_reason": e.verdict.reason or None,
            "e_launched": e.launch is not None, "e_command": launch.get("command"),
            "e_env": launch.get("env"), "e_pid": launch.get("pid"),
            "e_begin": stamp(launch.get("begin"))})
    return json.dumps(rows)


@dataclass(frozen=True)
class Ending:
    """A job's end as its node records it (:meth:`JobTransitions.end_many`)."""

    job_id: int
    verdict: Verdict  # from ``domain.jobstate.verdict``
    at: datetime
    # What it ran when that is not on record yet (command, env, pid, begin): written with
    # the end, one UPDATE for the common short job.
    launch: dict[str, Any] | None = None


# --- claims ---------------------------------------------------------------------------------


def _launch_columns() -> list[Any]:
    """What launching a claimed job needs, read with its claim (``services.prepare``):
    the job, whose it is, and the versions its template's cached context must have been
    built from (template, app, company, credentials)."""
    cred_version = (
        select(func.max(Credential.updated_at))
        .join(RunTemplateCredential, RunTemplateCredential.credential_id == Credential.id)
        .where(RunTemplateCredential.runtemplate_id == JOBS.c.runtemplate_id)
        .scalar_subquery())
    cred_count = (
        select(func.count()).select_from(RunTemplateCredential)
        .where(RunTemplateCredential.runtemplate_id == JOBS.c.runtemplate_id)
        .scalar_subquery())
    return [JOBS.c.id, JOBS.c.runtemplate_id, JOBS.c.app_id, JOBS.c.executor, JOBS.c.timeout,
            JOBS.c.overrides, JOBS.c.attempt, Company.slug, Application.name,
            RUNTEMPLATES.c.updated_at, Application.updated_at, Company.updated_at,
            cred_version, cred_count]


def _with_launch_columns(queued: Any, job_id: Any, *, sqlite: bool = False) -> Any:
    """``queued`` (schedule rows) joined to what launching their jobs needs. On SQLite the
    job's state is checked without its index (``+job.state``): with the queue's LIMIT a
    bound parameter, SQLite would otherwise walk every queued job by that index first, a
    claim costing more the longer the queue."""
    state = literal_column(f"+{JOBS.name}.state") if sqlite else JOBS.c.state
    return (select(*_launch_columns())
            .select_from(queued.join(JOBS, JOBS.c.id == job_id)
                         .join(Application, Application.id == JOBS.c.app_id)
                         .join(Company, Company.id == JOBS.c.company_id)
                         .outerjoin(RUNTEMPLATES, RUNTEMPLATES.c.id == JOBS.c.runtemplate_id))
            .where(state.in_(TRANSITIONS["claim"].sources)))


def _candidates_sqlite() -> Any:
    """SQLite (one node, one writer): the due jobs of templates with none claimed or
    running, in queue order (one per template is kept in Python)."""
    held = aliased(Job)
    due = (select(SCHEDULE.c.id.label("schedule_id"), SCHEDULE.c.job_id, SCHEDULE.c.after)
           .where(SCHEDULE.c.after <= bindparam("now"),
                  ~exists().where(held.runtemplate_id == SCHEDULE.c.runtemplate_id,
                                  held_state(held.state)))
           .order_by(SCHEDULE.c.after, SCHEDULE.c.id).limit(bindparam("n"))
           .subquery("due"))  # the queue's index first, then the joins for these few
    return (_with_launch_columns(due, due.c.job_id, sqlite=True)
            .order_by(due.c.after, due.c.schedule_id))


# PostgreSQL: the first due job of each template that has none claimed or running, its
# queue entry locked (skipping those another node is taking right now). Only the first of
# a template counts even when another node holds it locked, so two nodes never claim two
# jobs of one template; the unique index of held jobs per template is the last guard.
# The first of each template is looked for in the head of the queue (``scan`` entries in
# queue order, templates with a held job left out: the first of a template there is its
# first of all), so a claim costs the same with ten jobs queued or a million. A head full
# of one template's jobs gives one job; the next claim, at once, finds the others (that
# template is held then), as on SQLite.
_HELD_PG = f"""NOT EXISTS (SELECT 1 FROM job h WHERE h.runtemplate_id = s.runtemplate_id
                                         AND h.state IN ({_sql_states(HELD_STATES)}))"""
_PICKED_PG = text(f"""
    WITH head AS MATERIALIZED (
        SELECT s.id, s.after, s.runtemplate_id,
               row_number() OVER (PARTITION BY s.runtemplate_id ORDER BY s.after, s.id) AS nth
          FROM (SELECT s.id, s.after, s.runtemplate_id
                  FROM schedule s
                 WHERE s.after <= :now AND {_HELD_PG}
                 ORDER BY s.after, s.id
                 LIMIT :scan) s
    )
    SELECT s.id AS schedule_id, s.job_id, s.after
      FROM schedule s JOIN head ON head.id = s.id
     WHERE head.nth = 1 OR head.runtemplate_id IS NULL
     ORDER BY head.after, head.id
     LIMIT :n
       FOR UPDATE OF s SKIP LOCKED
""").bindparams(bindparam("now", type_=SCHEDULE.c.after.type)).columns(
    column("schedule_id", Integer), column("job_id", Integer),
    column("after", SCHEDULE.c.after.type)).cte("picked")


_CANDIDATES = {
    False: _candidates_sqlite(),
    True: (_with_launch_columns(_PICKED_PG, _PICKED_PG.c.job_id)
           .order_by(_PICKED_PG.c.after, _PICKED_PG.c.schedule_id)),
}


def _take_statement(postgresql: bool) -> Any:
    """Claim the picked jobs, and start those in ``start`` at once, in one statement (a
    job's row is written once: no second UPDATE, and on PostgreSQL no second round of
    foreign-key checks for a row this transaction already changed); off the queue."""
    starting = in_ids(JOBS.c.id, "start", postgresql)
    taken = (update(JOBS).where(in_ids(JOBS.c.id, "ids", postgresql), _state_check("claim"))
             .values(state=case((starting, leads_to("start")), else_=leads_to("claim")),
                     node=bindparam("by"), claimed_at=bindparam("now"),
                     begin=case((starting, bindparam("now")), else_=None),
                     updated_at=bindparam("now"))
             .returning(JOBS.c.id, JOBS.c.state))
    if not postgresql:
        return taken
    taken_cte = taken.cte("taken")
    unqueued = (delete(SCHEDULE).where(SCHEDULE.c.job_id.in_(select(taken_cte.c.id)))
                .cte("unqueued"))
    return select(taken_cte.c.id, taken_cte.c.state).add_cte(unqueued)


_TAKE = {False: _take_statement(False), True: _take_statement(True)}
_UNQUEUE = delete(SCHEDULE).where(SCHEDULE.c.job_id.in_(_ids()))


@dataclass(frozen=True)
class Claimed:
    """What a claim took: each job's launch row (``_launch_columns``), in queue order, and
    which of them it started (claimed and started in one statement)."""

    rows: list[Any]
    started: set[int]


# One SELECT for the current state when a guarded statement matched nothing (to say why).
_STATE_OF = select(JOBS.c.state).where(JOBS.c.id == bindparam("job_id"))
_STATES_OF = select(JOBS.c.id, JOBS.c.state).where(JOBS.c.id.in_(_ids()))
_HELD = select(exists().where(JOBS.c.runtemplate_id == bindparam("rt_id"),
                              held_state(JOBS.c.state)))
# What the next attempt of an ended job is made from.
_RETRY_OF = select(JOBS.c.runtemplate_id, JOBS.c.attempt, JOBS.c.launched_by,
                   JOBS.c.overrides, JOBS.c.end, JOBS.c.state).where(
    JOBS.c.id == bindparam("job_id"))
_RETRY_NOTED = (_guarded_one("retry")
                .values(reason=func.coalesce(JOBS.c.reason + "; ", "") + bindparam("note"))
                .returning(JOBS.c.id))


# SQLite: one executemany, a tick that exists already is skipped by the unique constraint.
_NEW_JOBS_SQLITE = (sqlite_insert(JOBS)
                    .on_conflict_do_nothing(index_elements=["runtemplate_id", "tick"])
                    .returning(JOBS.c.id, JOBS.c.runtemplate_id, JOBS.c.schedule))
# Jobs to run now (no tick, so no conflict): their ids in the order of the parameters.
_NOW_JOBS_SQLITE = insert(JOBS).returning(JOBS.c.id, sort_by_parameter_order=True)

# PostgreSQL: all of a tick's jobs and their queue rows in one statement, from arrays (a
# multi-row VALUES of a thousand rows costs the driver more to build than the server to
# run). The rows are inserted in the arrays' order, so the ids the sequence gives them
# ascend in that order (what SQLAlchemy's own ordered multi-row inserts rely on).
_NEW_JOBS_PG = text("""
    WITH made AS (
        INSERT INTO job (runtemplate_id, app_id, company_id, runtemplate_name, state,
                         schedule_type, schedule, tick, executor, launched_by, overrides,
                         timeout, attempt, cancel_requested, output_bytes, output_dropped,
                         created_at, updated_at)
        SELECT rt, app, co, name, st, kind, due, tk, ex, lb, '{}'::json, tmo, 1, false,
               0, 0, :now, :now
          FROM unnest(CAST(:rt AS integer[]), CAST(:app AS integer[]),
                      CAST(:co AS integer[]), CAST(:name AS varchar[]),
                      CAST(:st AS varchar[]), CAST(:kind AS varchar[]),
                      CAST(:due AS timestamptz[]), CAST(:tk AS timestamptz[]),
                      CAST(:ex AS varchar[]), CAST(:lb AS varchar[]), CAST(:tmo AS integer[]))
               WITH ORDINALITY AS t(rt, app, co, name, st, kind, due, tk, ex, lb, tmo, ord)
         ORDER BY ord
        ON CONFLICT (runtemplate_id, tick) DO NOTHING
        RETURNING id, runtemplate_id, schedule
    ), queued AS (
        INSERT INTO schedule (job_id, runtemplate_id, after, created_at)
        SELECT id, runtemplate_id, schedule, :now FROM made
    )
    SELECT id, runtemplate_id, schedule FROM made
""")
_PG_ARRAYS = {"rt": "runtemplate_id", "app": "app_id", "co": "company_id",
              "name": "runtemplate_name", "st": "state", "kind": "schedule_type",
              "due": "schedule", "tk": "tick", "ex": "executor", "lb": "launched_by",
              "tmo": "timeout"}


class _Made(NamedTuple):
    id: int
    runtemplate_id: int
    schedule: datetime


@dataclass(frozen=True)
class NewJob:
    """A job to queue now with no one-off values (:meth:`JobTransitions.create_now`)."""

    rt: RunTemplate
    schedule_type: str
    launched_by: str


class JobTransitions:
    """The store's transition API. ``on_end`` hooks run inside the transaction of every
    job's end, in the order given."""

    def __init__(self, on_end: Iterable[EndHook] = ()) -> None:
        self.on_end: list[EndHook] = list(on_end)

    # --- create ---------------------------------------------------------------------------

    def create(
        self, s: Session, rt: RunTemplate, *, schedule_type: str, launched_by: str,
        after: datetime, overrides: dict[str, Any], tick: datetime | None = None,
        attempt: int = 1, retry_of: int | None = None,
    ) -> Job:
        """Queue one job of ``rt`` (``overrides`` as stored: secret ones encrypted); it runs
        not before ``after``. ``pending`` while the template has a job held by a node."""
        state = "pending" if self._held(s, rt.id) else "scheduled"
        check("create", state)
        job = Job(
            runtemplate_id=rt.id, app_id=rt.app_id, company_id=rt.company_id,
            runtemplate_name=rt.name, state=state, schedule_type=schedule_type,
            schedule=after, tick=tick, executor=rt.executor, launched_by=launched_by,
            overrides=overrides, timeout=rt.timeout, attempt=attempt, retry_of_id=retry_of,
        )
        s.add(job)
        s.flush()
        s.add(Schedule(job_id=job.id, runtemplate_id=rt.id, after=after))
        s.flush()
        notify_nodes(s)
        return job

    def create_now(self, s: Session, asked: Sequence[NewJob], now: datetime) -> list[Job]:
        """Jobs to run not before ``now``, with no one-off values, all in one statement
        (the "run now" calls of a commit): what :meth:`create` makes for each, in order.
        The jobs returned are not in the session (nothing left to flush)."""
        if not asked:
            return []
        rows = []
        for a in asked:
            state = "pending" if self._held(s, a.rt.id) else "scheduled"
            check("create", state)
            rows.append({
                "runtemplate_id": a.rt.id, "app_id": a.rt.app_id, "company_id": a.rt.company_id,
                "runtemplate_name": a.rt.name, "state": state, "schedule_type": a.schedule_type,
                "schedule": now, "tick": None, "executor": a.rt.executor,
                "launched_by": a.launched_by, "overrides": {}, "timeout": a.rt.timeout,
                "attempt": 1, "cancel_requested": False, "output_bytes": 0,
                "output_dropped": 0, "created_at": now, "updated_at": now})
        ids = self._insert_jobs(s, rows, now, ordered=True)
        return [as_loaded(Job, {**row, "id": job_id})
                for job_id, row in zip(ids, rows, strict=True)]

    @staticmethod
    def _insert_jobs(s: Session, rows: list[dict[str, Any]], now: datetime, *,
                     ordered: bool = False) -> list[Any]:
        """Job rows and their queue rows, in one statement on PostgreSQL; a tick made
        already is skipped. Returns (id, runtemplate_id, schedule) of those made — with
        ``ordered``, their ids alone in the order of ``rows`` (jobs without a tick: none
        is skipped)."""
        conn = s.connection()
        made: list[Any]
        if _postgresql(s):
            params: dict[str, Any] = {k: [j[c] for j in rows] for k, c in _PG_ARRAYS.items()}
            params["now"] = now
            made = list(conn.execute(_NEW_JOBS_PG, params).all())  # their queue rows too
            ids = sorted(row.id for row in made)
        else:
            if ordered:
                ids = [row.id for row in conn.execute(_NOW_JOBS_SQLITE, rows)]
                made = [_Made(i, row["runtemplate_id"], row["schedule"])
                        for i, row in zip(ids, rows, strict=True)]
            else:
                made = list(conn.execute(_NEW_JOBS_SQLITE, rows).all())
            if made:
                conn.execute(insert(SCHEDULE), [
                    {"job_id": row.id, "runtemplate_id": row.runtemplate_id,
                     "after": row.schedule, "created_at": now} for row in made])
        if made:
            notify_nodes(s)
        return ids if ordered else made

    def create_ticks(self, s: Session, jobs: list[dict[str, Any]], now: datetime,
                     held: set[int]) -> list[Any]:
        """A scheduler tick's jobs (rows of the job table but their state), queued in bulk:
        ``pending`` for the templates in ``held`` (a job of theirs is claimed or running),
        else ``scheduled``. A tick made already is skipped (the unique (template, tick)
        constraint). Returns (id, runtemplate_id, schedule) of those made."""
        if not jobs:
            return []
        for job in jobs:
            job["state"] = "pending" if job["runtemplate_id"] in held else "scheduled"
        return self._insert_jobs(s, jobs, now)

    # --- claim, release, start ----------------------------------------------------------

    def claim(self, s: Session, now: datetime, node: str, limit: int) -> list[int]:
        """Take up to ``limit`` due jobs for ``node``: at most one per template, and none of
        a template that has a job claimed or running anywhere (no overlap)."""
        return [row[0] for row in self.claim_to_launch(s, now, node, limit).rows]

    def claim_to_launch(
        self, s: Session, now: datetime, node: str, limit: int,
        start: Callable[[list[Any]], Iterable[int]] = lambda _rows: (),
    ) -> Claimed:
        """:meth:`claim`, with what launching each job needs, read by the same query;
        ``start`` is given those rows and names the jobs to start at once (the node has
        a free slot and everything to launch them): claim and start in one statement —
        they are ``running`` when the transaction commits, before they are launched.
        The others are ``claimed``."""
        if limit <= 0:
            return Claimed([], set())
        postgresql = _postgresql(s)
        conn = s.connection()
        candidates = list(conn.execute(_CANDIDATES[postgresql], {
            "now": now, "n": limit * (1 if postgresql else 4), "scan": 16 + 8 * limit}))
        if not postgresql:  # one job per template (PostgreSQL's query keeps only the first)
            templates: set[int] = set()
            kept = []
            for row in candidates:
                if row.runtemplate_id is not None:
                    if row.runtemplate_id in templates:
                        continue
                    templates.add(row.runtemplate_id)
                kept.append(row)
            candidates = kept[:limit]
        if not candidates:
            return Claimed([], set())
        starting = [j for j in start(candidates) if j is not None]
        taken = dict(conn.execute(_TAKE[postgresql], {
            "ids": ids_param([row.id for row in candidates], postgresql),
            "start": ids_param(starting, postgresql), "by": node,
            "now": now}).all())
        if taken:
            self._changed_holds(s)
            if not postgresql:
                conn.execute(_UNQUEUE, {"ids": list(taken)})
        return Claimed([row for row in candidates if row.id in taken],
                       {j for j, state in taken.items() if state == leads_to("start")})

    def release(self, s: Session, job_ids: Sequence[int], now: datetime,
                node: str | None = None) -> Batch[int]:
        """Claimed jobs that never started go back to the queue (the daemon is stopping,
        did not start them in time, or died before it could: nobody ran them). With
        ``node``, only its claims; the others (and jobs in other states) are skipped."""
        if not job_ids:
            return Batch("release")
        query = _guarded("release", list(job_ids))
        if node is not None:
            query = query.where(JOBS.c.node == node)
        rows = s.execute(query.values(state=leads_to("release"), node=None, claimed_at=None,
                                      begin=None, updated_at=now)
                         .returning(JOBS.c.id, JOBS.c.runtemplate_id)).all()
        if rows:
            self._changed_holds(s)
            s.execute(insert(SCHEDULE), [{"job_id": r.id, "runtemplate_id": r.runtemplate_id,
                                          "after": now, "created_at": now} for r in rows])
            notify_nodes(s)
        done = [r.id for r in rows]
        return Batch("release", done, self._skipped(s, job_ids, done))

    def start(self, s: Session, job_id: int, node: str, now: datetime) -> None:
        """claimed -> running, by the node that claimed it, committed before the job is
        launched: a job whose start is not on record was never launched."""
        if s.connection().execute(_START, {"job_id": job_id, "by": node, "now": now}
                                  ).first() is None:
            raise self._illegal(s, job_id, "start")

    def request_cancel(self, s: Session, job_id: int) -> bool:
        """Ask the node running the job to stop it (no change of state: its end says
        ``cancelled``); False if it is not running."""
        done = s.connection().execute(
            update(JOBS).where(JOBS.c.id == job_id, JOBS.c.state == "running")
            .values(cancel_requested=True).returning(JOBS.c.id)).first()
        if done is not None:
            notify_nodes(s)  # the node running it looks at its cancel requests when woken
        return done is not None

    def launched(self, s: Session, job_id: int, *, command: list[str], env: dict[str, Any],
                 pid: int | None, begin: datetime | None) -> None:
        """What the job runs (secrets masked), its environment's record, its pid and when
        its process really began. No change of state."""
        s.connection().execute(_LAUNCHED, {"job_id": job_id, "command": command, "env": env,
                                           "pid": pid, "begin": begin})

    # --- ends -----------------------------------------------------------------------------

    def end(
        self, s: Session, job_id: int, verdict: Verdict, now: datetime, *,
        launch: dict[str, Any] | None = None,
    ) -> JobEnded:
        """A claimed or running job ended (``verdict`` from ``domain.jobstate.verdict``),
        with what it ran (``launch``: command, env, pid, begin) when that is not on record
        yet — one UPDATE for the common short job."""
        (ended,) = self.end_many(s, [Ending(job_id, verdict, now, launch)])
        if isinstance(ended, IllegalTransition):
            raise ended
        return ended

    def end_many(self, s: Session, endings: Sequence[Ending]
                 ) -> list[JobEnded | IllegalTransition]:
        """:meth:`end` for several jobs in one statement (on PostgreSQL counting them on
        their templates too): for each, its ``JobEnded`` or — not claimed or running any
        more — an :class:`IllegalTransition` (the others end all the same)."""
        for ending in endings:
            check("end", ending.verdict.state)
        postgresql = _postgresql(s)
        conn = s.connection()
        rows = {r.id: r for r in conn.execute(
            _END_MANY[postgresql], {"rows": _endings_json(endings, conn.dialect)})}
        events = iter(self._ended(
            s, [rows[e.job_id] for e in endings if e.job_id in rows],
            {e.job_id: e.verdict.meaning for e in endings}, counted=postgresql))
        return [next(events) if e.job_id in rows else self._illegal(s, e.job_id, "end")
                for e in endings]

    def block(self, s: Session, job_id: int, now: datetime, reason: str,
              env: dict[str, Any] | None = None) -> JobEnded:
        """A claimed job cannot start: required configuration missing or invalid."""
        row = s.execute(_guarded("block", [job_id]).values(
            state=leads_to("block"), end=now, updated_at=now, reason=reason, command=[],
            env=env, pid=None, begin=None).returning(*_ENDED_COLUMNS)).first()
        if row is None:
            raise self._illegal(s, job_id, "block")
        notify_nodes(s)  # its template is free again
        return self._ended(s, [row])[0]

    def cancel(self, s: Session, job_ids: Sequence[int], now: datetime, reason: str,
               *, strict: bool = True) -> Batch[JobEnded]:
        """Cancel jobs that have not started (queued, or claimed by a node that has not
        started them: its start then fails, so it never launches them). With ``strict``
        a job in another state is an :class:`IllegalTransition` (and nothing is
        cancelled); else it is in the result's ``skipped``."""
        if not job_ids:
            return Batch("cancel")
        rows = s.execute(_guarded("cancel", list(job_ids)).values(
            state=leads_to("cancel"), end=now, updated_at=now, reason=reason)
            .returning(*_ENDED_COLUMNS)).all()
        done = [r.id for r in rows]
        skipped = self._skipped(s, job_ids, done)
        if strict and skipped:
            missing, state = next(iter(skipped.items()))
            raise IllegalTransition(missing, "cancel", state)
        if done:
            s.execute(delete(SCHEDULE).where(SCHEDULE.c.job_id.in_(done)))
        return Batch("cancel", self._ended(s, rows), skipped)

    def lose(self, s: Session, job_ids: Sequence[int], now: datetime, reason: str
             ) -> Batch[JobEnded]:
        """Running jobs whose node stopped: their result is unknown. Jobs that are no
        longer running (they ended meanwhile) are in the result's ``skipped``."""
        if not job_ids:
            return Batch("lose")
        rows = s.execute(_guarded("lose", list(job_ids)).values(
            state=leads_to("lose"), end=now, updated_at=now, reason=reason)
            .returning(*_ENDED_COLUMNS)).all()
        skipped = self._skipped(s, job_ids, [r.id for r in rows])
        if rows:
            notify_nodes(s)  # their templates are free again
        return Batch("lose", self._ended(s, rows), skipped)

    def abandon(self, s: Session, node: str | None, now: datetime, reason: str
                ) -> tuple[Batch[JobEnded], Batch[int]]:
        """What a node that stopped held (``None``: every node — SQLite, one daemon): its
        running jobs are lost, its claimed ones go back to the queue (nobody ran them)."""
        query = select(Job.id, Job.state).where(Job.state.in_(HELD_STATES))
        if node is not None:
            query = query.where(Job.node == node)
        held = s.execute(query).all()
        lost = self.lose(s, [j for j, st in held if st == "running"], now, reason)
        released = self.release(s, [j for j, st in held if st == "claimed"], now)
        return lost, released

    # --- retry ----------------------------------------------------------------------------

    def retry(self, s: Session, job_id: int) -> Retried:
        """failed | timed_out -> its next attempt queued: a new job of the same template
        (``retry_of`` this one, the same one-off values, attempt + 1), not before the
        template's retry gap after the end. The ended job stays as it ended; its reason
        says which job retries it. Whether a job *should* be retried (attempts left, the
        app's exit codes) is the end path's call (:meth:`_maybe_retry`)."""
        src = s.connection().execute(_RETRY_OF, {"job_id": job_id}).first()
        if src is None or src.state not in TRANSITIONS["retry"].sources:
            raise IllegalTransition(job_id, "retry", src.state if src else None)
        rt = s.get(RunTemplate, src.runtemplate_id) if src.runtemplate_id else None
        if rt is None:
            raise Conflict(f"job {job_id} cannot be retried: its run template was removed",
                           {"job_id": job_id})
        gap = retry_gap(rt.retry_backoff, rt.retry_min_gap, src.attempt)
        retry = self.create(
            s, rt, schedule_type="retry", launched_by=src.launched_by,
            after=src.end + timedelta(seconds=gap), overrides=dict(src.overrides or {}),
            attempt=src.attempt + 1, retry_of=job_id)
        note = f"retry {retry.attempt}/{rt.max_attempts} queued as job {retry.id} in {gap} s"
        if s.connection().execute(_RETRY_NOTED, {"job_id": job_id, "note": note}
                                  ).first() is None:  # changed meanwhile: undo it all
            raise self._illegal(s, job_id, "retry")
        return Retried(retry.id, retry.attempt, note)

    # --- the one path of every end --------------------------------------------------------

    def _ended(self, s: Session, rows: Sequence[Any],
               meanings: dict[int, ExitCodeDef | None] | None = None,
               counted: bool = False) -> list[JobEnded]:
        """``meanings``: the app's declaration of each job's exit code (by job id);
        ``counted``: the statement that ended the jobs counted them on their templates."""
        if not rows:
            return []
        self._changed_holds(s)
        if not counted:
            self._count(s, rows)
        events = []
        for r in rows:
            retry_id, reason = None, r.reason
            if r.runtemplate_id is not None and r.state in FAILURE_STATES:
                retry_id, note = self._maybe_retry(s, r, (meanings or {}).get(r.id))
                if note:
                    reason = f"{reason}; {note}" if reason else note
            events.append(JobEnded(
                job_id=r.id, state=r.state, at=r.end, exitcode=r.exitcode, reason=reason,
                runtemplate_id=r.runtemplate_id, company_id=r.company_id, app_id=r.app_id,
                attempt=r.attempt, node=r.node, launched_by=r.launched_by,
                schedule_type=r.schedule_type, begin=r.begin, retry_job_id=retry_id))
        for hook in self.on_end:
            hook(s, events)
        s.info.setdefault("events", []).extend(events)
        return events

    def _count(self, s: Session, rows: Sequence[Any]) -> None:
        """Successes and retryable failures counted on their templates: one statement."""
        counts: dict[int, dict[str, Any]] = {}
        for r in rows:
            if r.runtemplate_id is None or not (r.state == "succeeded"
                                                or r.state in RETRYABLE_STATES):
                continue
            c = counts.setdefault(r.runtemplate_id, {"rt_id": r.runtemplate_id, "ok": 0,
                                                     "bad": 0, "at": None})
            if r.state == "succeeded":
                c["ok"] += 1
                c["at"] = r.end if c["at"] is None else max(c["at"], r.end)
            else:
                c["bad"] += 1
        if counts:
            s.connection().execute(_COUNT, list(counts.values()))

    def _maybe_retry(self, s: Session, r: Any, meaning: ExitCodeDef | None
                     ) -> tuple[int | None, str | None]:
        """The next attempt (:meth:`retry`), when the template's policy and the app's exit
        codes allow it: (its id, the note added to the ended job's reason)."""
        rt = s.get(RunTemplate, r.runtemplate_id)
        if rt is None or not should_retry(r.state, r.attempt, rt.max_attempts, meaning):
            return None, None
        retry = self.retry(s, r.id)
        return retry.job_id, retry.note

    def _held(self, s: Session, rt_id: int) -> bool:
        """Whether a job of the template is claimed or running: looked up once per
        transaction (many jobs of one template queued in one commit), forgotten by every
        claim, start and end (:meth:`_changed_holds`)."""
        known = transaction_memo(s, "held")
        if rt_id not in known:
            known[rt_id] = bool(s.connection().execute(_HELD, {"rt_id": rt_id}).scalar())
        return known[rt_id]

    @staticmethod
    def _changed_holds(s: Session) -> None:
        s.info.pop("held", None)

    def _skipped(self, s: Session, asked: Sequence[int], done: Sequence[int]
                 ) -> dict[int, str | None]:
        """The jobs of ``asked`` a batch transition left alone, with their states."""
        taken = set(done)
        left = [j for j in dict.fromkeys(asked) if j not in taken]
        if not left:
            return {}
        states = dict(s.connection().execute(_STATES_OF, {"ids": left}).all())
        return {j: states.get(j) for j in left}

    def _illegal(self, s: Session, job_id: int, transition: str) -> IllegalTransition:
        state = s.connection().execute(_STATE_OF, {"job_id": job_id}).scalar()
        return IllegalTransition(job_id, transition, state)
