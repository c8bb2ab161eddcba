"""pgjobs schema: claim_limited() stamps a job's start with the clock when it takes the job.

Revision ID: 0008_claim_clock
Revises: 0007_constant_checks
Create Date: 2026-12-01
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0008_claim_clock"
down_revision = "0007_constant_checks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0008_claim_clock.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0008_claim_clock.down.sql"))
