"""pgjobs schema: jobs, attempts, dedup keys, dead letters, workers.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-24
"""

from pgjobs.db.migrations import Step

revision = "0001_initial"
down_revision = None
branch_labels = ("pgjobs",)  # the branch, in an application's Alembic history
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
