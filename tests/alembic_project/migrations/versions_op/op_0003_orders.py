"""orders, whose view reads pgjobs' jobs

Revision ID: op_0003_orders
Revises: op_0002_pgjobs
Create Date: 2026-12-07 10:02:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "op_0003_orders"
down_revision: str | Sequence[str] | None = "op_0002_pgjobs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


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
