"""pgjobs schema: dedup windows, per-task limits, cron slots, retention.

Revision ID: 0003_time_and_limits
Revises: 0002_failures
Create Date: 2026-11-25
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0003_time_and_limits"
down_revision = "0002_failures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0003_time_and_limits.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0003_time_and_limits.down.sql"))
