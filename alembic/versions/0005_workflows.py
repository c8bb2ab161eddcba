"""pgjobs schema: workflows (chain, group, chord) as rows.

Revision ID: 0005_workflows
Revises: 0004_observability
Create Date: 2026-11-25
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = "0005_workflows"
down_revision = "0004_observability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0005_workflows.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("0005_workflows.down.sql"))
