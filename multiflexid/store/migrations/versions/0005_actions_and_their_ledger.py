"""Actions after a job (on templates and companies) and their delivery ledger

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('action',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('runtemplate_id', sa.Integer(), nullable=True),
    sa.Column('company_id', sa.Integer(), nullable=True),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('throttle', sa.String(length=8), nullable=False),
    sa.Column('module', sa.String(length=64), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['company.id'], name=op.f('fk_action_company_id_company'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['runtemplate_id'], ['runtemplate.id'], name=op.f('fk_action_runtemplate_id_runtemplate'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action'))
    )
    with op.batch_alter_table('action', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_action_company_id'), ['company_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_runtemplate_id'), ['runtemplate_id'], unique=False)

    op.create_table('action_run',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('action_id', sa.Integer(), nullable=True),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('runtemplate_id', sa.Integer(), nullable=True),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('module', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('next_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('node', sa.String(length=255), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('result', sa.Text(), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['action_id'], ['action.id'], name=op.f('fk_action_run_action_id_action'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['company_id'], ['company.id'], name=op.f('fk_action_run_company_id_company'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['job.id'], name=op.f('fk_action_run_job_id_job'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['runtemplate_id'], ['runtemplate.id'], name=op.f('fk_action_run_runtemplate_id_runtemplate'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_action_run')),
    sa.UniqueConstraint('job_id', 'action_id', name=op.f('uq_action_run_job_id_action_id'))
    )
    with op.batch_alter_table('action_run', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_action_run_action_id'), ['action_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_run_company_id'), ['company_id'], unique=False)
        batch_op.create_index('ix_action_run_due', ['state', 'next_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_run_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_action_run_runtemplate_id'), ['runtemplate_id'], unique=False)

    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_retry_of_id'), ['retry_of_id'], unique=False)

    with op.batch_alter_table('runtemplate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('inherit_actions', sa.Boolean(), server_default=sa.text('true'), nullable=False))
        batch_op.add_column(sa.Column('inactive_reason', sa.Text(), nullable=True))



def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
