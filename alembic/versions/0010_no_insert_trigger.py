"""pgjobs schema: no trigger on inserts of jobs; pgjobs' inserts notify by themselves.

Revision ID: 0010_no_insert_trigger
Revises: 0009_claim_index_no_dedup
Create Date: 2026-12-02
"""

from pgjobs.db.migrations import Step

revision = "0010_no_insert_trigger"
down_revision = "0009_claim_index_no_dedup"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
