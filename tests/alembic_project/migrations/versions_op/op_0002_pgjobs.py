"""pgjobs' schema, from pgjobs' own revisions

Revision ID: op_0002_pgjobs
Revises: op_0001_users
Create Date: 2026-12-07 10:01:00.000000

"""

from collections.abc import Sequence

from alembic import op
from pgjobs.migrations import op_downgrade, op_upgrade

# revision identifiers, used by Alembic.
revision: str = "op_0002_pgjobs"
down_revision: str | Sequence[str] | None = "op_0001_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    # pgjobs' head when this runs. A newer pgjobs' revisions come with a later
    # revision of the application's, or with `pgjobs migrate`.
    op_upgrade()
    op.execute("COMMENT ON SCHEMA pgjobs IS 'background jobs: pgjobs'")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("COMMENT ON SCHEMA pgjobs IS NULL")
    op_downgrade("base")
