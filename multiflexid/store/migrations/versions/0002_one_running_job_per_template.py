"""At most one running job per run template (partial unique index); node host

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs left "running" twice by the old code would block the index: keep the newest
    # running, mark the others lost (it can only happen after a crash).
    op.execute(sa.text(
        "UPDATE job SET state = 'lost', reason = 'found running twice at upgrade' "
        "WHERE state = 'running' AND runtemplate_id IS NOT NULL AND id NOT IN ("
        "SELECT max(id) FROM job WHERE state = 'running' AND runtemplate_id IS NOT NULL "
        "GROUP BY runtemplate_id)"
    ))
    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.create_index(
            "uq_job_one_running_per_template", ["runtemplate_id"], unique=True,
            postgresql_where=sa.text("state = 'running'"),
            sqlite_where=sa.text("state = 'running'"),
        )
    with op.batch_alter_table("node", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
