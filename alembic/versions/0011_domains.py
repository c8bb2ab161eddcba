"""pgjobs schema: statuses, failure policies and attempt limits are domains with their checks.

Revision ID: 0011_domains
Revises: 0010_no_insert_trigger
Create Date: 2026-12-02
"""

from pgjobs.db.migrations import Step

revision = "0011_domains"
down_revision = "0010_no_insert_trigger"
branch_labels = None
depends_on = None

step = Step(revision, retype=True)


def upgrade() -> None:
    step.upgrade()


def downgrade() -> None:
    step.downgrade()
