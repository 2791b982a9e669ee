"""Exit codes of applications beyond 32 bits

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-09

- app_exit_code.code: a 64-bit integer. Upstream's schema allows any non-negative integer
  as an exit code key (``^[0-9]+$``); real files declare HTTP-like codes, some beyond
  2^31 - 1. No process exits with them: they are kept as meanings, and exported again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app_exit_code", schema=None) as batch_op:
        batch_op.alter_column("code", existing_type=sa.Integer(), type_=sa.BigInteger(),
                              existing_nullable=False)


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
