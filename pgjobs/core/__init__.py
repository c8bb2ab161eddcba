"""The core: statuses and their transitions, the Job models, errors, retry and cron.

Pure Python with no I/O: every other package may import it, and it imports none of them.
"""
