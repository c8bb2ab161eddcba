"""pgjobs schema: views for inspection and alerting.

Revision ID: 0004_observability
Revises: 0003_time_and_limits
Create Date: 2026-11-25
"""

from pgjobs.db.migrations import Step

revision = "0004_observability"
down_revision = "0003_time_and_limits"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
