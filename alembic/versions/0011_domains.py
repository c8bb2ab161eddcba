"""pgjobs schema: statuses, failure policies and attempt limits are domains with their checks.

Revision ID: 0011_domains
Revises: 0010_no_insert_trigger
Create Date: 2026-12-02
"""

from alembic import op
from pgjobs.migrations import retype_sql

revision = "0011_domains"
down_revision = "0010_no_insert_trigger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(retype_sql("0011_domains.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(retype_sql("0011_domains.down.sql"))
