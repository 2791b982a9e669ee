"""Text search in job output on SQLite: an FTS5 ``trigram`` index, filled in the background.

The index is contentless and ``detail=none`` (the smallest FTS5 makes; SQLite 3.40 has no
cheaper substring index). Its rowid is ``job_id << SEQ_BITS | seq``, so it is ordered by
job: a page by id is read from it in order and stops when it has its jobs. Candidates
are the chunks holding a few trigrams spread over the text; each is rechecked with
``multiflexi_contains`` (store/textmatch.py: what a match is).

Indexing costs about 1 µs per byte, so it is kept off the writer's hot path: the daemon's
indexer (:meth:`SqliteOutputSearch.index_some`, through the writer) adds rows past the
*mark* in small transactions; every search scans the rows past the mark, so results
never wait for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    and_,
    bindparam,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session

from .orm import Job, JobOutput
from .textmatch import Order, first_lines, fts_query, needle, ordered

# An FTS row's rowid: job_id << SEQ_BITS | seq. A posting of the index is the delta to the
# previous rowid (a varint): 24 bits make it 4 bytes between neighbouring jobs (32 would
# make it 5, an index a fifth bigger); a job's chunks past 2**24 are not indexed (its
# output would need 16 million separate writes; the default cap is 16 MiB). Changing it
# needs a migration that rebuilds the index and its triggers.
SEQ_BITS = 24
_SEQ_MASK = (1 << SEQ_BITS) - 1

TABLE = "job_output_search"
MARK = "job_output_search_mark"

DDL = (
    f"CREATE VIRTUAL TABLE {TABLE} USING fts5(data, content='', "
    "tokenize='trigram', detail='none', columnsize=0)",
    f"CREATE TABLE {MARK} (mark INTEGER NOT NULL)",
    f"INSERT INTO {MARK} (mark) VALUES (0)",
    # A row below the mark (a rowid used again after the newest rows were deleted) is
    # indexed at once; the indexer only goes up.
    f"""CREATE TRIGGER job_output_search_late AFTER INSERT ON job_output
        WHEN new.rowid <= (SELECT mark FROM {MARK}) AND new.seq < {1 << SEQ_BITS}
        BEGIN
            INSERT INTO {TABLE} (rowid, data)
            VALUES ((new.job_id << {SEQ_BITS}) | new.seq, new.data);
        END""",
    # Deleted output leaves the index (a contentless table needs the indexed values).
    f"""CREATE TRIGGER job_output_search_forget AFTER DELETE ON job_output
        WHEN old.rowid <= (SELECT mark FROM {MARK}) AND old.seq < {1 << SEQ_BITS}
        BEGIN
            INSERT INTO {TABLE} ({TABLE}, rowid, data)
            VALUES ('delete', (old.job_id << {SEQ_BITS}) | old.seq, old.data);
        END""",
)


def create(conn: Connection) -> None:
    for statement in DDL:
        conn.exec_driver_sql(statement)


def register_functions(dbapi_connection: Any) -> None:
    """``multiflexi_contains(data, folded)`` on a SQLite connection (the recheck)."""
    from .textmatch import contains

    dbapi_connection.create_function("multiflexi_contains", 2, contains, deterministic=True)


_FTS = table(TABLE, column("rowid", Integer))
_MARK = table(MARK, column("mark", Integer))
_OUTPUT_ROWID = literal_column("job_output.rowid", Integer)
_MATCH = text(f"{TABLE} MATCH :q")
FIRST_ROUND = 256  # FTS rowids read in the first round of a page by id
CANDIDATES = 16384  # at most this many in a later round
_BATCH_ROWS = 500
_PENDING = (select(_OUTPUT_ROWID, func.length(JobOutput.data))
            .where(_OUTPUT_ROWID > bindparam("mark")).order_by(_OUTPUT_ROWID)
            .limit(_BATCH_ROWS))


class SqliteOutputSearch:
    sqlite = True

    def page(self, s: Session, jobs: Select[Any], text_: str, order: Order,
             limit: int) -> list[Job]:
        """Up to ``limit`` jobs of ``jobs`` (a filtered select of Job) whose output holds
        ``text_``, in ``order``."""
        folded = needle(text_)
        backlog = self._unindexed_jobs(s, jobs, folded, order, limit)
        if order.by_id:
            ids = self._streamed(s, jobs, text_, folded, order, limit)
            ids = sorted(set(ids) | set(backlog), reverse=order.desc)[:limit]
            rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}
            return [rows[i] for i in ids if i in rows]
        found = set(self._all_indexed(s, text_, folded)) | set(backlog)
        each = func.json_each(json.dumps(sorted(found))).table_valued("value")
        return list(s.scalars(ordered(jobs.where(Job.id.in_(select(each.c.value))), order,
                                      limit)))

    def _streamed(self, s: Session, jobs: Select[Any], text_: str, folded: str,
                  order: Order, limit: int) -> list[int]:
        """Indexed matches in id order, read from the index a round at a time (more each
        round) until ``limit`` jobs passed the filters and the recheck."""
        found: dict[int, None] = {}  # in order, once each
        bound = None
        if order.after_id is not None:
            bound = order.after_id << SEQ_BITS if order.desc else (
                (order.after_id + 1) << SEQ_BITS) - 1
        query = fts_query(text_)
        batch = max(FIRST_ROUND, 4 * limit)
        while len(found) < limit:
            cand = select(_FTS.c.rowid).where(_MATCH)
            if bound is not None:
                cand = cand.where(_FTS.c.rowid < bound if order.desc else _FTS.c.rowid > bound)
            cand = cand.order_by(_FTS.c.rowid.desc() if order.desc else _FTS.c.rowid)
            rowids = list(s.scalars(cand.limit(batch), {"q": query}))
            if not rowids:
                break
            bound = rowids[-1]
            hits = s.execute(_rechecked(jobs, rowids, folded)).all()
            found.update(dict.fromkeys(sorted({h.job_id for h in hits}, reverse=order.desc)))
            batch = min(batch * 4, CANDIDATES)
        return list(found)[:limit]

    def _all_indexed(self, s: Session, text_: str, folded: str) -> Iterator[int]:
        """Every indexed job whose output holds the text (for orders other than id)."""
        rows = s.execute(
            select(JobOutput.job_id).distinct()
            .select_from(_FTS)
            .join(JobOutput, and_(JobOutput.job_id == _FTS.c.rowid.op(">>")(SEQ_BITS),
                                  JobOutput.seq == _FTS.c.rowid.op("&")(_SEQ_MASK)))
            .where(_MATCH, func.multiflexi_contains(JobOutput.data, folded)),
            {"q": fts_query(text_)})
        return (r[0] for r in rows)

    def _unindexed_jobs(self, s: Session, jobs: Select[Any], folded: str, order: Order,
                        limit: int) -> list[int]:
        """Matching jobs among the output the indexer has not reached (scanned)."""
        mark = select(_MARK.c.mark).scalar_subquery()
        matching = select(JobOutput.job_id).where(
            _OUTPUT_ROWID > mark, func.multiflexi_contains(JobOutput.data, folded))
        return list(s.scalars(ordered(jobs.with_only_columns(Job.id)
                                      .where(Job.id.in_(matching)), order, limit)))

    def first_lines(self, s: Session, job_ids: Iterable[int], text_: str
                    ) -> dict[int, tuple[int, str]]:
        """The first chunk (seq) and line of each job that holds the text: candidates of
        these jobs from the index, and what it has not reached."""
        folded = needle(text_)
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        rowids = s.scalars(select(_FTS.c.rowid).where(
            _MATCH, _FTS.c.rowid.between(ids[0] << SEQ_BITS, (ids[-1] << SEQ_BITS) | _SEQ_MASK)),
            {"q": fts_query(text_)})
        wanted = set(ids)
        rows = list(s.execute(_rechecked(
            None, [r for r in rowids if r >> SEQ_BITS in wanted], folded)).all())
        mark = select(_MARK.c.mark).scalar_subquery()
        rows += s.execute(select(JobOutput.job_id, JobOutput.seq, JobOutput.data).where(
            JobOutput.job_id.in_(ids), _OUTPUT_ROWID > mark,
            func.multiflexi_contains(JobOutput.data, folded))).all()
        return first_lines(rows, folded)

    # the index itself

    def status(self, s: Session) -> dict[str, Any]:
        """How output is searched, and how many chunks the indexer has not reached."""
        mark = s.scalar(select(_MARK.c.mark)) or 0
        behind = s.scalar(select(func.count()).select_from(JobOutput)
                          .where(_OUTPUT_ROWID > mark)) or 0
        return {"index": "fts5 trigram", "behind": behind}

    def behind(self, s: Session) -> bool:
        """Whether output past the mark waits for the indexer (a cheap look)."""
        mark = select(_MARK.c.mark).scalar_subquery()
        return s.scalar(select(_OUTPUT_ROWID).select_from(JobOutput)
                        .where(_OUTPUT_ROWID > mark).limit(1)) is not None

    def index_some(self, s: Session, max_bytes: int) -> tuple[int, int]:
        """Index the next output rows past the mark, about ``max_bytes`` of them (at least
        one row), in the caller's write transaction (the writer's); (rows, bytes)."""
        conn = s.connection()
        mark = conn.execute(select(_MARK.c.mark)).scalar() or 0
        upto, rows, size = mark, 0, 0
        for rowid, length in conn.execute(_PENDING, {"mark": mark}):
            if rows and size + (length or 0) > max_bytes:
                break
            upto, rows, size = rowid, rows + 1, size + (length or 0)
        if not rows:
            return 0, 0
        conn.exec_driver_sql(
            f"INSERT INTO {TABLE} (rowid, data) SELECT (job_id << {SEQ_BITS}) | seq, data "
            f"FROM job_output WHERE rowid > ? AND rowid <= ? AND seq < {1 << SEQ_BITS}",
            (mark, upto))
        conn.exec_driver_sql(f"UPDATE {MARK} SET mark = ?", (upto,))
        return rows, size


def _rechecked(jobs: Select[Any] | None, rowids: list[int], folded: str) -> Select[Any]:
    """(job_id, seq, data) of the candidates (index rowids) that hold the text, of the jobs
    ``jobs`` selects (None: any)."""
    each = func.json_each(json.dumps(rowids)).table_valued("value")
    job_id, seq = each.c.value.op(">>")(SEQ_BITS), each.c.value.op("&")(_SEQ_MASK)
    query: Select[Any] = select(  # type: ignore[assignment]
        JobOutput.job_id, JobOutput.seq, JobOutput.data).select_from(each)
    if jobs is not None and jobs.whereclause is not None:
        # the filters first, on each candidate's job: the recheck only for those passing
        query = query.join(Job, Job.id == job_id).where(jobs.whereclause)
    return (query.join(JobOutput, and_(JobOutput.job_id == job_id, JobOutput.seq == seq))
            .where(func.multiflexi_contains(JobOutput.data, folded)))
