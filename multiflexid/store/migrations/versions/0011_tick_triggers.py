"""Actions on a tick's missed or late deadline: action runs of a tick

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

- action_run.job_id may be NULL: a run for a tick (triggers ``missed`` and ``late``) has
  ``tick_id`` instead (the tick's job, if any, is in the tick's row).
- action_run.tick_id: the tracked tick (``runtemplate_tick``); SET NULL when the template
  and its ticks are removed (the run stays in the ledger and fails saying so).
- one run per (tick, action), as one per (job, action).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("action_run", schema=None) as batch_op:
        batch_op.alter_column("job_id", existing_type=BigId, nullable=True)
        batch_op.add_column(sa.Column("tick_id", BigId, nullable=True))
        batch_op.create_foreign_key("fk_action_run_tick_id_runtemplate_tick",
                                    "runtemplate_tick", ["tick_id"], ["id"],
                                    ondelete="SET NULL")
        batch_op.create_index("ix_action_run_tick_id", ["tick_id"], unique=False)
        batch_op.create_unique_constraint("uq_action_run_tick_id_action_id",
                                          ["tick_id", "action_id"])


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
