"""orders, whose view reads pgjobs' jobs

Revision ID: app_0002_orders
Revises: app_0001_users
Create Date: 2026-12-07 10:01:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "app_0002_orders"
down_revision: str | Sequence[str] | None = "app_0001_users"
branch_labels: str | Sequence[str] | None = None
# pgjobs' head when this revision was written: applied before this one, and
# reverted only after it.
depends_on: str | Sequence[str] | None = "0012_stuck_threads"


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table(
        "orders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("job_id", sa.Uuid, nullable=True),
    )
    op.execute(
        "CREATE VIEW order_shipping AS SELECT o.id AS order_id, j.status"
        " FROM orders o LEFT JOIN pgjobs.jobs j ON j.id = o.job_id"
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP VIEW order_shipping")
    op.drop_table("orders")
