"""The audit trail knows the run template an entry concerns

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09

- audit.runtemplate_id: the run template a change concerns — the template itself, a job of
  it (run now, cancel) or an action on it — so a template's trail is one indexed query.
  Filled here for the entries already recorded: a new column, not a change of what they
  say (on PostgreSQL the append-only trigger is held off for these statements only).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runtemplate_id", sa.Integer(), nullable=True))
        batch_op.create_index("ix_audit_runtemplate_recent", ["runtemplate_id", "id"],
                              unique=False)
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("ALTER TABLE audit DISABLE TRIGGER audit_append_only")
    op.execute("UPDATE audit SET runtemplate_id = entity_id WHERE entity = 'runtemplate'")
    for entity, table in (("job", "job"), ("action", "action")):
        op.execute(f"UPDATE audit SET runtemplate_id = (SELECT {table}.runtemplate_id "
                   f"FROM {table} WHERE {table}.id = audit.entity_id) "
                   f"WHERE entity = '{entity}'")
    if postgresql:
        op.execute("ALTER TABLE audit ENABLE TRIGGER audit_append_only")


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
