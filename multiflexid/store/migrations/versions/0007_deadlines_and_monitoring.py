"""Deadlines of run templates, their tracked ticks, last success, Zabbix per company

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

- runtemplate: deadline_time (HH:MM) or deadline_after (seconds after the due time);
  deadline_next_tick (the next tick the tracker starts tracking); last_success_at (when
  its last successful job ended, filled from the history here).
- runtemplate_tick: one row per tracked tick (open, fulfilled, fulfilled_late, failed,
  missed).
- company: zabbix_host (the Zabbix host its jobs are reported under) and zabbix_server.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("runtemplate", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("deadline_time", sa.String(length=5), nullable=True))
        batch_op.add_column(sa.Column("deadline_after", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("deadline_next_tick", sa.DateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index("ix_runtemplate_deadline_next_tick", ["deadline_next_tick"])
    with op.batch_alter_table("company", schema=None) as batch_op:
        batch_op.add_column(sa.Column("zabbix_host", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("zabbix_server", sa.String(length=255), nullable=True))
    op.create_table(
        "runtemplate_tick",
        sa.Column("id", BigId, nullable=False),
        sa.Column("runtemplate_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("tick", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("job_id", BigId, nullable=True),
        sa.Column("missed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["runtemplate_id"], ["runtemplate.id"], ondelete="CASCADE",
                                name="fk_runtemplate_tick_runtemplate_id_runtemplate"),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"], ondelete="CASCADE",
                                name="fk_runtemplate_tick_company_id_company"),
        sa.ForeignKeyConstraint(["app_id"], ["application.id"], ondelete="CASCADE",
                                name="fk_runtemplate_tick_app_id_application"),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="SET NULL",
                                name="fk_runtemplate_tick_job_id_job"),
        sa.PrimaryKeyConstraint("id", name="pk_runtemplate_tick"),
        sa.UniqueConstraint("runtemplate_id", "tick",
                            name="uq_runtemplate_tick_runtemplate_tick"),
    )
    op.create_index("ix_runtemplate_tick_state_deadline", "runtemplate_tick",
                    ["state", "deadline"])
    op.create_index("ix_runtemplate_tick_company_id", "runtemplate_tick", ["company_id"])
    op.create_index("ix_runtemplate_tick_app_id", "runtemplate_tick", ["app_id"])
    op.create_index("ix_runtemplate_tick_job_id", "runtemplate_tick", ["job_id"])
    # The last success of every template from the history so far.
    op.execute(sa.text(
        "UPDATE runtemplate SET last_success_at = (SELECT max(job.\"end\") FROM job "
        "WHERE job.runtemplate_id = runtemplate.id AND job.state = 'succeeded')"))


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
