"""Text search in job output: a trigram index on each backend

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-10

- SQLite: job_output_search, an FTS5 trigram table (contentless, detail=none) keyed by
  job_id << 24 | seq, and job_output_search_mark, how far the daemon's indexer has come
  (0: the output already stored is indexed in the background after this upgrade; until
  then searches scan it). Triggers index a row inserted below the mark and remove
  deleted output from the index.
- PostgreSQL: multiflexi_output_text(bytea), the output as text; job_output_search
  (job_id, seq, text) with a GIN pg_trgm index on text, filled by the daemon's indexer
  from job_output_unindexed, which a trigger on job_output fills (all output stored so far
  is noted here). When the pg_trgm extension cannot be created (no privilege, contrib
  files missing) the upgrade goes on without the index and says so; `multiflexi-cli db
  upgrade` tries again.

See multiflexid/store/textmatch.py for what a match is.
"""

from __future__ import annotations

import logging

from alembic import op

from multiflexid.store import search

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

log = logging.getLogger("multiflexid.migrations")


def upgrade() -> None:
    problem = search.create_schema(op.get_bind())
    if problem:
        log.warning("%s", problem)


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
