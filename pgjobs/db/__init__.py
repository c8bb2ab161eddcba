"""The database: the named statements, the driver that runs operations, connections, migrations.

It imports only pgjobs.core.
"""
