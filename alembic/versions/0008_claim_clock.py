"""pgjobs schema: claim_limited() stamps a job's start with the clock when it takes the job.

Revision ID: 0008_claim_clock
Revises: 0007_constant_checks
Create Date: 2026-12-01
"""

from pgjobs.db.migrations import Step

revision = "0008_claim_clock"
down_revision = "0007_constant_checks"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
