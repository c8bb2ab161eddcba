"""pgjobs schema: jobs, attempts, dedup keys, dead letters, workers.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0001_initial"
down_revision = None
branch_labels = ("pgjobs",)
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0001_initial.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0001_initial.down.sql"))
