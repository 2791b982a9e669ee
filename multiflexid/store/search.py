"""Text search in job output, indexed by trigrams on both backends.

What a search means (the same on SQLite and PostgreSQL): the jobs with an output chunk
that contains the text — a substring, compared case-insensitively (Unicode lower case),
at least :data:`MIN_LENGTH` characters, on one line. A chunk is read as UTF-8, or as
Latin-1 when it is not valid UTF-8 (so its ASCII text is still found). Output is stored
with secrets masked, so no secret is in the index or found by a search.

How it is found fast:

- PostgreSQL: a GIN index of ``pg_trgm`` trigrams on ``multiflexi_output_text(data)``,
  kept by the database with every output row; ``ILIKE`` finds candidates through it and
  rechecks them. Without ``pg_trgm`` (it could not be created) the same query scans all
  output: correct, slow, and said in ``status``.
- SQLite: an FTS5 table with the ``trigram`` tokenizer, contentless and ``detail=none``
  (the smallest index FTS5 makes; 3.40 has no faster substring index). Its rowid is
  ``job_id << 24 | seq``, so it is ordered by job. Candidates are the chunks holding a few
  trigrams spread over the text; each is rechecked with :func:`contains`. Indexing costs about
  1 µs per byte, so it is kept off the writer's hot path: the daemon's indexer
  (:func:`index_some`) adds rows in small transactions when the writer is idle; rows not
  indexed yet (above the mark) are scanned by every search, so results never wait for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    ColumnElement,
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
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from .orm import Job, JobOutput

log = logging.getLogger(__name__)

MIN_LENGTH = 3
MAX_LENGTH = 200

# --- what a match is (both backends) -------------------------------------------------------


def output_text(data: bytes) -> str:
    """A chunk as text, as ``multiflexi_output_text`` reads it on PostgreSQL: UTF-8, else
    Latin-1; a NUL byte (which no PostgreSQL text holds) makes it backslash escapes."""
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else
                   "\\\\" if b == 92 else f"\\{b:03o}" for b in data)


def needle(text_: str) -> str:
    """What chunks are compared with (the caller checked :func:`problem`)."""
    return text_.lower()


def problem(text_: str) -> str | None:
    """Why ``text_`` cannot be searched for, or None."""
    if len(text_) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters are needed (the index holds trigrams)"
    if len(text_) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    if "\n" in text_ or "\r" in text_:
        return "one line only (a match is within a line)"
    if "\x00" in text_:
        return "must not contain a NUL character"
    return None


def contains(data: bytes | None, folded: str | None) -> bool:
    """Whether a chunk holds the (lower-cased) text: the recheck of every candidate."""
    if data is None or folded is None:
        return False
    return folded in output_text(bytes(data)).lower()


def matching_line(data: bytes, folded: str, limit: int = 200) -> str:
    """The first line of a chunk that holds the text (cut to ``limit`` characters around
    it)."""
    for line in output_text(data).splitlines():
        at = line.lower().find(folded)
        if at >= 0:
            if len(line) <= limit:
                return line
            start = max(0, min(at - limit // 4, len(line) - limit))
            return line[start:start + limit]
    return ""


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """``multiflexi_contains(data, folded)`` on a SQLite connection (the recheck)."""
    dbapi_connection.create_function("multiflexi_contains", 2, contains, deterministic=True)


# --- schema (migration 0009; `db upgrade` repairs what was left out) ------------------------

# An FTS row's rowid: job_id << SEQ_BITS | seq. A posting of the index is the delta to the
# previous rowid (a varint): 24 bits make it 4 bytes between neighbouring jobs (32 would
# make it 5, an index a fifth bigger); a job's chunks past 2**24 are not indexed (its
# output would need 16 million separate writes; the default cap is 16 MiB). Changing it
# needs a migration that rebuilds the index and its triggers.
SEQ_BITS = 24
_SEQ_MASK = (1 << SEQ_BITS) - 1

SQLITE_TABLE = "job_output_search"
SQLITE_MARK = "job_output_search_mark"
PG_FUNCTION = "multiflexi_output_text"
PG_INDEX = "ix_job_output_text"
# What the ORM does not describe (a virtual table and its shadow tables, the mark, an index
# that exists only where pg_trgm does): autogenerate leaves them alone.
NOT_MODELLED_PREFIXES = (SQLITE_TABLE, PG_INDEX)

SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE {SQLITE_TABLE} USING fts5(data, content='', "
    "tokenize='trigram', detail='none', columnsize=0)",
    f"CREATE TABLE {SQLITE_MARK} (mark INTEGER NOT NULL)",
    f"INSERT INTO {SQLITE_MARK} (mark) VALUES (0)",
    # A row below the mark (a rowid used again after the newest rows were deleted) is
    # indexed at once; the indexer only goes up.
    f"""CREATE TRIGGER job_output_search_late AFTER INSERT ON job_output
        WHEN new.rowid <= (SELECT mark FROM {SQLITE_MARK}) AND new.seq < {1 << SEQ_BITS}
        BEGIN
            INSERT INTO {SQLITE_TABLE} (rowid, data)
            VALUES ((new.job_id << {SEQ_BITS}) | new.seq, new.data);
        END""",
    # Deleted output leaves the index (a contentless table needs the indexed values).
    f"""CREATE TRIGGER job_output_search_forget AFTER DELETE ON job_output
        WHEN old.rowid <= (SELECT mark FROM {SQLITE_MARK}) AND old.seq < {1 << SEQ_BITS}
        BEGIN
            INSERT INTO {SQLITE_TABLE} ({SQLITE_TABLE}, rowid, data)
            VALUES ('delete', (old.job_id << {SEQ_BITS}) | old.seq, old.data);
        END""",
)

# PARALLEL UNSAFE: its exception blocks are subtransactions, which no process of a parallel
# query may start (not even the leader): a query calling it is never run in parallel.
PG_FUNCTION_DDL = f"""
CREATE OR REPLACE FUNCTION {PG_FUNCTION}(data bytea) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL UNSAFE AS $$
BEGIN
    RETURN convert_from(data, 'UTF8');
EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
    BEGIN
        RETURN convert_from(data, 'LATIN1');
    EXCEPTION WHEN character_not_in_repertoire OR untranslatable_character THEN
        RETURN encode(data, 'escape');
    END;
END $$"""
PG_INDEX_DDL = (f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON job_output USING gin "
                f"({PG_FUNCTION}(data) gin_trgm_ops)")


def create_sqlite(conn: Connection) -> None:
    for statement in SQLITE_DDL:
        conn.exec_driver_sql(statement)


def ensure_postgres(conn: Connection) -> str | None:
    """The text function, the pg_trgm extension and the index; None when all are there,
    else why the index could not be made (the search then scans: slower, still right)."""
    conn.exec_driver_sql(PG_FUNCTION_DDL)
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # no privilege, or the contrib files are not installed
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return (f"the pg_trgm extension could not be created ({reason}); text search scans "
                "all output. Fix: as the database owner or a superuser run CREATE EXTENSION "
                "pg_trgm (Debian: it comes with the postgresql package), then "
                "multiflexi-cli db upgrade")
    conn.exec_driver_sql(PG_INDEX_DDL)
    return None


def not_modelled(name: str | None) -> bool:
    """For autogenerate: the search objects the ORM leaves to the migration."""
    return bool(name) and str(name).startswith(NOT_MODELLED_PREFIXES)


# --- the searches ---------------------------------------------------------------------------

_FTS = table(SQLITE_TABLE, column("rowid", Integer))
_MARK = table(SQLITE_MARK, column("mark", Integer))
_OUTPUT_ROWID = literal_column("job_output.rowid", Integer)
FIRST_ROUND = 256  # FTS rowids read in the first round of a streamed search
CANDIDATES = 16384  # at most this many in a later round


@dataclass
class Order:
    """How a page is ordered and where it starts: ``by_id`` pages are streamed from the
    index in id order (``after_id``: the last id of the previous page)."""

    by_id: bool
    desc: bool
    after_id: int | None = None
    order_by: list[Any] = field(default_factory=list)
    keyset: ColumnElement[bool] | None = None


MAX_GRAMS = 6


def fts_query(text_: str) -> str:
    """The FTS5 query of trigrams of ``text_``: candidates for the recheck. A chunk holding
    the text holds all of them; a few that do not overlap (and the last) narrow as well
    as all would, and each more costs a posting list to read."""
    grams = [text_[i:i + 3] for i in range(0, len(text_) - 2, 3)] + [text_[-3:]]
    if len(grams) > MAX_GRAMS:
        step = len(grams) / MAX_GRAMS
        grams = [grams[int(k * step)] for k in range(MAX_GRAMS - 1)] + [grams[-1]]
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in dict.fromkeys(grams))


def like_pattern(text_: str) -> str:
    escaped = text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class OutputSearch:
    """The search of one backend (see the module docstring)."""

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"

    # pages of jobs

    def page(self, s: Session, jobs: Select[Any], text_: str, order: Order,
             limit: int) -> list[Job]:
        """Up to ``limit`` jobs of ``jobs`` (a filtered select of Job) whose output holds
        ``text_``, in ``order``."""
        folded = needle(text_)
        if not self.sqlite:
            matching = select(JobOutput.job_id).where(
                func.multiflexi_output_text(JobOutput.data).ilike(like_pattern(text_),
                                                                   escape="\\"))
            return list(s.scalars(_ordered(jobs.where(Job.id.in_(matching)), order, limit)))
        backlog = self._unindexed_jobs(s, jobs, folded, order, limit)
        if order.by_id:
            ids = self._streamed(s, jobs, text_, folded, order, limit)
            ids = sorted(set(ids) | set(backlog), reverse=order.desc)[:limit]
            rows = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}
            return [rows[i] for i in ids if i in rows]
        found = set(self._all_indexed(s, text_, folded)) | set(backlog)
        each = func.json_each(json.dumps(sorted(found))).table_valued("value")
        return list(s.scalars(_ordered(jobs.where(Job.id.in_(select(each.c.value))), order,
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
            cand = select(_FTS.c.rowid).where(text(f"{SQLITE_TABLE} MATCH :q"))
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
            .where(text(f"{SQLITE_TABLE} MATCH :q"),
                   func.multiflexi_contains(JobOutput.data, folded)),
            {"q": fts_query(text_)})
        return (r[0] for r in rows)

    def _unindexed_jobs(self, s: Session, jobs: Select[Any], folded: str, order: Order,
                        limit: int) -> list[int]:
        """Matching jobs among the output the indexer has not reached (scanned)."""
        mark = select(_MARK.c.mark).scalar_subquery()
        matching = select(JobOutput.job_id).where(
            _OUTPUT_ROWID > mark, func.multiflexi_contains(JobOutput.data, folded))
        return list(s.scalars(_ordered(jobs.with_only_columns(Job.id)
                                       .where(Job.id.in_(matching)), order, limit)))

    # what matched

    def first_lines(self, s: Session, job_ids: Iterable[int], text_: str
                    ) -> dict[int, tuple[int, str]]:
        """The first chunk (seq) and line of each job that holds the text."""
        folded = needle(text_)
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        if not self.sqlite:
            rows = s.execute(
                select(JobOutput.job_id, JobOutput.seq, JobOutput.data)
                .where(JobOutput.job_id.in_(ids),
                       func.multiflexi_output_text(JobOutput.data).ilike(
                           like_pattern(text_), escape="\\"))
                .order_by(JobOutput.job_id, JobOutput.seq)
                .ext(distinct_on(JobOutput.job_id))).all()
        else:  # candidates of these jobs from the index, and what it has not reached
            rowids = s.scalars(select(_FTS.c.rowid).where(
                text(f"{SQLITE_TABLE} MATCH :q"),
                _FTS.c.rowid.between(ids[0] << SEQ_BITS, (ids[-1] << SEQ_BITS) | _SEQ_MASK)),
                {"q": fts_query(text_)})
            wanted = set(ids)
            rows = list(s.execute(_rechecked(
                None, [r for r in rowids if r >> SEQ_BITS in wanted], folded)).all())
            mark = select(_MARK.c.mark).scalar_subquery()
            rows += s.execute(select(JobOutput.job_id, JobOutput.seq, JobOutput.data).where(
                JobOutput.job_id.in_(ids), _OUTPUT_ROWID > mark,
                func.multiflexi_contains(JobOutput.data, folded))).all()
        out: dict[int, tuple[int, str]] = {}
        for job_id, seq, data in sorted(rows, key=lambda r: (r[0], r[1])):
            if job_id not in out:
                out[job_id] = (seq, matching_line(data, folded))
        return out

    # the index itself

    def status(self, s: Session) -> dict[str, Any]:
        """What `status` says about the index: how it works and what it has not reached."""
        if not self.sqlite:
            indexed = s.scalar(text("SELECT to_regclass(:name) IS NOT NULL"),
                               {"name": PG_INDEX})
            doc: dict[str, Any] = {"index": "pg_trgm" if indexed else None, "behind": 0}
            if not indexed:
                doc["warning"] = ("text search is not indexed (the pg_trgm extension is "
                                  "missing): every search scans all output; as the "
                                  "database owner run CREATE EXTENSION pg_trgm, then "
                                  "multiflexi-cli db upgrade")
            return doc
        mark = s.scalar(select(_MARK.c.mark)) or 0
        behind = s.scalar(select(func.count()).select_from(JobOutput)
                          .where(_OUTPUT_ROWID > mark)) or 0
        return {"index": "fts5 trigram", "behind": behind}


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


def _ordered(query: Select[Any], order: Order, limit: int) -> Select[Any]:
    if order.keyset is not None:
        query = query.where(order.keyset)
    return query.order_by(*order.order_by).limit(limit)


# --- the SQLite indexer's step ----------------------------------------------------------------

_BATCH_ROWS = 500
_PENDING = (select(_OUTPUT_ROWID, func.length(JobOutput.data))
            .where(_OUTPUT_ROWID > bindparam("mark")).order_by(_OUTPUT_ROWID)
            .limit(_BATCH_ROWS))


def behind(s: Session) -> bool:
    """Whether output past the mark waits for the indexer (a cheap look)."""
    mark = select(_MARK.c.mark).scalar_subquery()
    return s.scalar(select(_OUTPUT_ROWID).select_from(JobOutput)
                    .where(_OUTPUT_ROWID > mark).limit(1)) is not None


def index_some(s: Session, max_bytes: int) -> tuple[int, int]:
    """Index the next output rows past the mark, about ``max_bytes`` of them (at least
    one row), in the caller's write transaction; (rows, bytes) indexed."""
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
        f"INSERT INTO {SQLITE_TABLE} (rowid, data) SELECT (job_id << {SEQ_BITS}) | seq, data "
        f"FROM job_output WHERE rowid > ? AND rowid <= ? AND seq < {1 << SEQ_BITS}",
        (mark, upto))
    conn.exec_driver_sql(f"UPDATE {SQLITE_MARK} SET mark = ?", (upto,))
    return rows, size
