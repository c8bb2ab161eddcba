"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from alembic import op
from pgjobs.migrations import schema_sql

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("${up_revision}.sql"))


def downgrade() -> None:
    op.get_bind().exec_driver_sql(schema_sql("${up_revision}.down.sql"))
