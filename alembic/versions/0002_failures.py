"""pgjobs schema: cancellation of running jobs, replay allowance, the maintenance leader.

Revision ID: 0002_failures
Revises: 0001_initial
Create Date: 2026-11-25
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0002_failures"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0002_failures.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0002_failures.down.sql"))
