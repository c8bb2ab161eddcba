"""pgjobs schema: the CHECKs on statuses as constant lists, cheaper for each statement writing jobs.

Revision ID: 0007_constant_checks
Revises: 0006_self_notify
Create Date: 2026-11-25
"""

from pgjobs.db.migrations import Step

revision = "0007_constant_checks"
down_revision = "0006_self_notify"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
