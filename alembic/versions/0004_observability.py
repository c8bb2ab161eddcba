"""pgjobs schema: views for inspection and alerting.

Revision ID: 0004_observability
Revises: 0003_time_and_limits
Create Date: 2026-11-25
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0004_observability"
down_revision = "0003_time_and_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0004_observability.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0004_observability.down.sql"))
