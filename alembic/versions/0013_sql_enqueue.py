"""pgjobs schema: pgjobs.enqueue() and pgjobs.enqueue_many(), to enqueue from SQL.

Revision ID: 0013_sql_enqueue
Revises: 0012_stuck_threads
Create Date: 2026-12-07
"""

from pgjobs.db.migrations import Step

revision = "0013_sql_enqueue"
down_revision = "0012_stuck_threads"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
