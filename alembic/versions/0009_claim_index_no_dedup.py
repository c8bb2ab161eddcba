"""pgjobs schema: the claim indexes do not try to deduplicate their unique keys.

Revision ID: 0009_claim_index_no_dedup
Revises: 0008_claim_clock
Create Date: 2026-12-01
"""

from pgjobs.db.migrations import Step

revision = "0009_claim_index_no_dedup"
down_revision = "0008_claim_clock"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
