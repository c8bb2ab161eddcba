"""pgjobs schema: pgjobs' own inserts send their NOTIFY themselves; the trigger is for the rest.

Revision ID: 0006_self_notify
Revises: 0005_workflows
Create Date: 2026-11-25
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0006_self_notify"
down_revision = "0005_workflows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0006_self_notify.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0006_self_notify.down.sql"))
