"""pgjobs schema: pgjobs' own inserts send their NOTIFY themselves; the trigger is for the rest.

Revision ID: 0006_self_notify
Revises: 0005_workflows
Create Date: 2026-11-25
"""

from pgjobs.db.migrations import Step

revision = "0006_self_notify"
down_revision = "0005_workflows"
branch_labels = None
depends_on = None

step = Step(revision)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
