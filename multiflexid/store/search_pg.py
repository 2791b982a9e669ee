"""Text search in job output on PostgreSQL: a ``pg_trgm`` GIN index, filled in the background.

The output's text (``multiflexi_output_text(data)``) is copied into ``job_output_search``
(job_id, seq, text) whose ``text`` has a GIN ``gin_trgm_ops`` index: ``ILIKE`` finds
candidates through it and rechecks them. Keeping a trigram index costs PostgreSQL about
a microsecond per byte (and far more for output with no repeating words), which on the
output rows themselves would slow every job's writes — a 50 MB job was captured at
1.5 MB/s instead of 70 — so the copy is made in the background instead: a trigger
notes every new output row in ``job_output_unindexed``, and the daemon's indexer
(:meth:`PgOutputSearch.index_some`, in transactions of its own, on any node: rows are
taken with ``SKIP LOCKED``) moves them over. Every search also scans the rows noted and
not moved yet, so results never wait for it.

Without ``pg_trgm`` (it could not be created) there is no GIN index: the same searches
scan ``job_output_search``: right, slow, and said in ``status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    Select,
    Text,
    column,
    func,
    select,
    table,
    text,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import Session

from .orm import Job, JobOutput
from .textmatch import Order, first_lines, like_pattern, needle, ordered

FUNCTION = "multiflexi_output_text"
TABLE = "job_output_search"
PENDING = "job_output_unindexed"
INDEX = "ix_job_output_search_text"

# PARALLEL UNSAFE: its exception blocks are subtransactions, which no process of a parallel
# query may start (not even the leader): a query calling it is never run in parallel.
FUNCTION_DDL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}(data bytea) RETURNS text
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

DDL = (
    FUNCTION_DDL,
    f"""CREATE TABLE {TABLE} (
        job_id BIGINT NOT NULL,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        CONSTRAINT pk_{TABLE} PRIMARY KEY (job_id, seq),
        CONSTRAINT fk_{TABLE}_job_id_job FOREIGN KEY (job_id) REFERENCES job (id)
            ON DELETE CASCADE)""",
    # No foreign key: a noted row whose output was deleted is dropped by the indexer.
    f"""CREATE TABLE {PENDING} (
        job_id BIGINT NOT NULL,
        seq INTEGER NOT NULL,
        CONSTRAINT pk_{PENDING} PRIMARY KEY (job_id, seq))""",
    f"""CREATE FUNCTION multiflexi_output_unindexed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {PENDING} (job_id, seq) VALUES (NEW.job_id, NEW.seq)
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER job_output_search_pending AFTER INSERT ON job_output
        FOR EACH ROW EXECUTE FUNCTION multiflexi_output_unindexed()""",
    # The output already stored is indexed in the background after the upgrade.
    f"INSERT INTO {PENDING} (job_id, seq) SELECT job_id, seq FROM job_output",
)
INDEX_DDL = f"CREATE INDEX IF NOT EXISTS {INDEX} ON {TABLE} USING gin (text gin_trgm_ops)"


def create(conn: Connection) -> str | None:
    for statement in DDL:
        conn.exec_driver_sql(statement)
    return ensure_index(conn)


def ensure_index(conn: Connection) -> str | None:
    """The pg_trgm extension and the GIN index; None when both are there, else why the
    index could not be made (searches then scan: slower, still right)."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # no privilege, or the contrib files are not installed
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        return (f"the pg_trgm extension could not be created ({reason}); text search scans "
                "all output. Fix: as the database owner or a superuser run CREATE EXTENSION "
                "pg_trgm (Debian: it comes with the postgresql package), then "
                "multiflexi-cli db upgrade")
    conn.exec_driver_sql(INDEX_DDL)
    return None


def has_index(conn: Connection) -> bool:
    return bool(conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": INDEX}).scalar())


_SEARCH = table(TABLE, column("job_id", BigInteger), column("seq", Integer),
                column("text", Text))
_PENDING = table(PENDING, column("job_id", BigInteger), column("seq", Integer))

# One step of the indexer: up to 500 noted rows (those another node holds are skipped),
# as many of them as fit in :max_bytes (at least one), moved over in one statement.
_INDEX_SOME = text(f"""
WITH picked AS (
    SELECT job_id, seq FROM {PENDING} ORDER BY job_id, seq LIMIT 500 FOR UPDATE SKIP LOCKED
), sized AS (
    SELECT p.job_id, p.seq,
           row_number() OVER w AS n, sum(coalesce(length(o.data), 0)) OVER w AS upto
    FROM picked p LEFT JOIN job_output o ON o.job_id = p.job_id AND o.seq = p.seq
    WINDOW w AS (ORDER BY p.job_id, p.seq)
), gone AS (
    DELETE FROM {PENDING} u USING sized z
    WHERE u.job_id = z.job_id AND u.seq = z.seq AND (z.n = 1 OR z.upto <= :max_bytes)
    RETURNING u.job_id, u.seq
), added AS (
    INSERT INTO {TABLE} (job_id, seq, text)
    SELECT o.job_id, o.seq, {FUNCTION}(o.data)
    FROM gone g JOIN job_output o ON o.job_id = g.job_id AND o.seq = g.seq
    ON CONFLICT DO NOTHING
    RETURNING octet_length(text) AS size
)
SELECT (SELECT count(*) FROM gone), (SELECT coalesce(sum(size), 0) FROM added)""")


class PgOutputSearch:
    sqlite = False

    def page(self, s: Session, jobs: Select[Any], text_: str, order: Order,
             limit: int) -> list[Job]:
        """Up to ``limit`` jobs of ``jobs`` (a filtered select of Job) whose output holds
        ``text_``, in ``order``: the best page of the indexed output and the best of what
        the indexer has not reached, merged."""
        ids: set[int] = set()
        unindexed = self._unindexed(text_).with_only_columns(_PENDING.c.job_id)
        for matching in (self._indexed(text_), unindexed):
            ids.update(s.scalars(ordered(jobs.with_only_columns(Job.id)
                                         .where(Job.id.in_(matching)), order, limit)))
        if not ids:
            return []
        return list(s.scalars(ordered(jobs.where(Job.id.in_(ids)), order, limit)))

    @staticmethod
    def _indexed(text_: str) -> Select[Any]:
        return select(_SEARCH.c.job_id).where(
            _SEARCH.c.text.ilike(like_pattern(text_), escape="\\"))

    @staticmethod
    def _unindexed(text_: str, job_ids: list[int] | None = None) -> Select[Any]:
        """(job_id, seq, text) of the noted chunks that hold the text: each looked up from
        the (short) queue, never a scan of all output (LATERAL ... LIMIT 1 keeps the
        planner from turning it into one)."""
        chunk = func.multiflexi_output_text(JobOutput.data)
        hit = (select(chunk.label("text"))
               .where(JobOutput.job_id == _PENDING.c.job_id, JobOutput.seq == _PENDING.c.seq,
                      chunk.ilike(like_pattern(text_), escape="\\"))
               .limit(1).lateral())
        query = select(_PENDING.c.job_id, _PENDING.c.seq, hit.c.text).select_from(
            _PENDING.join(hit, true()))
        if job_ids is not None:
            query = query.where(_PENDING.c.job_id.in_(job_ids))
        return query

    def first_lines(self, s: Session, job_ids: Iterable[int], text_: str
                    ) -> dict[int, tuple[int, str]]:
        """The first chunk (seq) and line of each job that holds the text."""
        folded = needle(text_)
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        pattern = like_pattern(text_)
        indexed = (select(_SEARCH.c.job_id, _SEARCH.c.seq, _SEARCH.c.text)
                   .where(_SEARCH.c.job_id.in_(ids),
                          _SEARCH.c.text.ilike(pattern, escape="\\"))
                   .order_by(_SEARCH.c.job_id, _SEARCH.c.seq)
                   .ext(distinct_on(_SEARCH.c.job_id))).subquery()
        unindexed = self._unindexed(text_, ids).subquery()
        # One statement, so one snapshot: the indexer moves a chunk from the queue to the
        # index in one commit, and a statement sees it in one or the other (two statements
        # could see it in neither, and the job's matching line went missing).
        rows = s.execute(union_all(select(indexed), select(unindexed))).all()
        return first_lines(list(rows), folded)

    # the index itself

    def status(self, s: Session) -> dict[str, Any]:
        """How output is searched, and how many chunks the indexer has not reached."""
        behind = s.scalar(select(func.count()).select_from(_PENDING)) or 0
        if has_index(s.connection()):
            return {"index": "pg_trgm", "behind": behind}
        return {"index": None, "behind": behind,
                "warning": ("text search is not indexed (the pg_trgm extension is missing): "
                            "every search scans all output; as the database owner run "
                            "CREATE EXTENSION pg_trgm, then multiflexi-cli db upgrade")}

    def behind(self, s: Session) -> bool:
        return s.scalar(select(_PENDING.c.job_id).limit(1)) is not None

    def index_some(self, s: Session, max_bytes: int) -> tuple[int, int]:
        """Move the next noted rows to the index, about ``max_bytes`` of them (at least
        one), in the caller's transaction (one of its own); (rows, bytes)."""
        rows, size = s.execute(_INDEX_SOME, {"max_bytes": max_bytes}).one()
        return int(rows), int(size)
