"""The queue's order as one index: (after, id)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A claim reads the head of the queue in order (due time, then id: first in, first out).
On PostgreSQL an index of ``after`` alone does not order the many jobs queued at one
instant by id, so a claim sorted the whole queue; (after, id) gives the order itself.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_schedule_due", "schedule", ["after", "id"], unique=False)
    op.drop_index("ix_schedule_after", table_name="schedule")


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
