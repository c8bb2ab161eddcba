"""pgjobs schema: cancellation of running jobs, replay allowance, the maintenance leader.

Revision ID: 0002_failures
Revises: 0001_initial
Create Date: 2026-11-25
"""

from pgjobs.db.migrations import Step

revision = "0002_failures"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
