"""A company's environment, tags and a note on run templates

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09

- company_env: variables every job of a company gets (secret ones encrypted).
- runtemplate_tag: tags of run templates (selections of lists and bulk changes).
- runtemplate: note (free text).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "company_env",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("encrypted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"],
                                name=op.f("fk_company_env_company_id_company"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_company_env")),
        sa.UniqueConstraint("company_id", "key", name=op.f("uq_company_env_company_id_key")),
    )
    op.create_table(
        "runtemplate_tag",
        sa.Column("runtemplate_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["runtemplate_id"], ["runtemplate.id"],
                                name=op.f("fk_runtemplate_tag_runtemplate_id_runtemplate"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("runtemplate_id", "tag", name=op.f("pk_runtemplate_tag")),
    )
    with op.batch_alter_table("runtemplate_tag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runtemplate_tag_tag"), ["tag"], unique=False)
    with op.batch_alter_table("runtemplate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
