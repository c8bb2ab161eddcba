"""pgjobs schema: workflows (chain, group, chord) as rows.

Revision ID: 0005_workflows
Revises: 0004_observability
Create Date: 2026-11-25
"""

from pgjobs.db.migrations import Step

revision = "0005_workflows"
down_revision = "0004_observability"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
