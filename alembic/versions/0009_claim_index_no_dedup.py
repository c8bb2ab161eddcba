"""pgjobs schema: the claim indexes do not try to deduplicate their unique keys.

Revision ID: 0009_claim_index_no_dedup
Revises: 0008_claim_clock
Create Date: 2026-12-01
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0009_claim_index_no_dedup"
down_revision = "0008_claim_clock"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0009_claim_index_no_dedup.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0009_claim_index_no_dedup.down.sql"))
