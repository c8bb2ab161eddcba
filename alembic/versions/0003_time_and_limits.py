"""pgjobs schema: dedup windows, per-task limits, cron slots, retention.

Revision ID: 0003_time_and_limits
Revises: 0002_failures
Create Date: 2026-11-25
"""

from pgjobs.db.migrations import Step

revision = "0003_time_and_limits"
down_revision = "0002_failures"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
