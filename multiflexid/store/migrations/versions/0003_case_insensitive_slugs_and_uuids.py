"""Company slugs and application uuids unique regardless of case

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The lookups match them regardless of case now; a unique index on lower(...) makes
sure no case twin can be written beside one. The unique constraints of 0001 stay (on
SQLite, dropping one would mean rebuilding tables other tables point at).

Twins written before this revision are resolved, each said in a warning: the oldest row
keeps its value; a younger company's slug gets ``-<id>`` appended, and a younger
application loses its uuid (it stays usable by id; importing its file again updates the
oldest one).
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("multiflexid.store.migrations")
_SLUG_LENGTH = 64


def upgrade() -> None:
    conn = op.get_bind()
    _rename_company_twins(conn)
    _clear_application_twins(conn)
    op.create_index("uq_company_slug_lower", "company", [sa.text("lower(slug)")], unique=True)
    op.create_index("uq_application_uuid_lower", "application", [sa.text("lower(uuid)")],
                    unique=True)


def _twins(conn: sa.Connection, table: str, column: str) -> list[tuple[int, str, int, str]]:
    """(id, value, oldest id, oldest value) of each younger row whose value is a case twin
    of an older row's."""
    rows = conn.execute(sa.text(
        f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY id")).all()
    oldest: dict[str, tuple[int, str]] = {}
    out = []
    for row_id, value in rows:
        if value.lower() in oldest:
            out.append((row_id, value, *oldest[value.lower()]))
        else:
            oldest[value.lower()] = (row_id, value)
    return out


def _rename_company_twins(conn: sa.Connection) -> None:
    twins = _twins(conn, "company", "slug")
    taken = {s.lower() for s in conn.execute(sa.text("SELECT slug FROM company")).scalars()}
    for row_id, slug, _oldest_id, oldest in twins:
        suffix = f"-{row_id}"
        while (new := slug[:_SLUG_LENGTH - len(suffix)] + suffix).lower() in taken:
            suffix += f"-{row_id}"
        taken.add(new.lower())
        conn.execute(sa.text("UPDATE company SET slug = :new WHERE id = :id"),
                     {"new": new, "id": row_id})
        log.warning("company %s: slug %r is now %r (it differed only in case from %r, and "
                    "slugs now match regardless of case)", row_id, slug, new, oldest)


def _clear_application_twins(conn: sa.Connection) -> None:
    for row_id, uuid, oldest_id, _oldest in _twins(conn, "application", "uuid"):
        conn.execute(sa.text("UPDATE application SET uuid = NULL WHERE id = :id"),
                     {"id": row_id})
        log.warning("application %s: uuid %s removed (application %s has it in other case; "
                    "uuids now match regardless of case); it stays usable by its id",
                    row_id, uuid, oldest_id)


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
