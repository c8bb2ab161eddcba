"""What pgjobs reports: transition events and their hooks, health checks, the xmin horizon.

It imports pgjobs.core and pgjobs.db.
"""
