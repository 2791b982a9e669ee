"""PostgreSQL: a change of when templates are due wakes the daemons

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07

A statement that creates, removes, enables or disables run templates or moves their next
run (the CLI, a socket call, another node's scheduler) sends the NOTIFY the daemons
LISTEN for, so an idle daemon need not look for changed templates every second. SQLite
has no NOTIFY: the daemon asks SQLite whether anyone committed since it last looked.
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE FUNCTION multiflexi_templates_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('multiflexi_jobs', '');
            RETURN NULL;
        END $$""")
    op.execute("""
        CREATE TRIGGER runtemplate_due_changed
        AFTER INSERT OR DELETE OR UPDATE OF next_schedule, active ON runtemplate
        FOR EACH STATEMENT EXECUTE FUNCTION multiflexi_templates_changed()""")


def downgrade() -> None:
    raise NotImplementedError("MultiFlexi does not downgrade")
