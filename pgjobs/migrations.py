"""pgjobs' schema migrations, by the path Alembic projects and revision files import.

An Alembic project that carries pgjobs' schema imports these names from here (its env.py
and revision files stay valid across pgjobs versions); they live in pgjobs.db.migrations.
"""

from pgjobs.db.migrations import (
    BRANCH,
    LOCK_KEY,
    VERSION_SCHEMA,
    VERSION_TABLE,
    Step,
    config,
    current,
    downgrade,
    exclude_pgjobs,
    locked,
    op_downgrade,
    op_upgrade,
    upgrade,
    version_location,
)

__all__ = [
    "BRANCH",
    "LOCK_KEY",
    "VERSION_SCHEMA",
    "VERSION_TABLE",
    "Step",
    "config",
    "current",
    "downgrade",
    "exclude_pgjobs",
    "locked",
    "op_downgrade",
    "op_upgrade",
    "upgrade",
    "version_location",
]
