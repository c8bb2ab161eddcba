"""pgjobs schema: no trigger on inserts of jobs; pgjobs' inserts notify by themselves.

Revision ID: 0010_no_insert_trigger
Revises: 0009_claim_index_no_dedup
Create Date: 2026-12-02
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0010_no_insert_trigger"
down_revision = "0009_claim_index_no_dedup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0010_no_insert_trigger.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0010_no_insert_trigger.down.sql"))
