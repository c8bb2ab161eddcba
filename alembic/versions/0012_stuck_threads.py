"""pgjobs schema: workers report threads stuck past a hard time limit as busy slots.

Revision ID: 0012_stuck_threads
Revises: 0011_domains
Create Date: 2026-12-07
"""

from pgjobs.db.migrations import Step

revision = "0012_stuck_threads"
down_revision = "0011_domains"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
