"""A claimed state: a node took the job and has not started it yet

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index("uq_job_one_running_per_template")
        batch_op.drop_index("ix_job_active")
        # At most one claimed or running job per template.
        batch_op.create_index(
            "uq_job_one_held_per_template", ["runtemplate_id"], unique=True,
            postgresql_where=sa.text("state IN ('claimed', 'running')"),
            sqlite_where=sa.text("state IN ('claimed', 'running')"),
        )
        batch_op.create_index(
            "ix_job_active", ["node", "state"],
            postgresql_where=sa.text("state IN ('running', 'claimed', 'scheduled', 'pending')"),
            sqlite_where=sa.text("state IN ('running', 'claimed', 'scheduled', 'pending')"),
        )


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
