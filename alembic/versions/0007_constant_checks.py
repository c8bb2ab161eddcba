"""pgjobs schema: the CHECKs on statuses as constant lists, cheaper for each statement writing jobs.

Revision ID: 0007_constant_checks
Revises: 0006_self_notify
Create Date: 2026-11-25
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0007_constant_checks"
down_revision = "0006_self_notify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0007_constant_checks.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0007_constant_checks.down.sql"))
