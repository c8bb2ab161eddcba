"""pgjobs schema: workers report threads stuck past a hard time limit as busy slots.

Revision ID: 0012_stuck_threads
Revises: 0011_domains
Create Date: 2026-12-07
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0012_stuck_threads"
down_revision = "0011_domains"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0012_stuck_threads.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0012_stuck_threads.down.sql"))
