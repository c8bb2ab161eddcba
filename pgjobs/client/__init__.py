"""The client: the App, its task registry, tasks, enqueuing, admin calls, current_job().

It imports pgjobs.core, pgjobs.db, and pgjobs.observe; maintenance and the
worker build on it.
"""
