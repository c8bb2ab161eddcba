"""Maintenance: duties that one worker at a time does for all of them.

The leader is elected with a Postgres advisory lock (leader.py; behind a
transaction pooler with no direct URL, the lock is taken per round). While it
leads, it releases due scheduled and retrying jobs (scheduler.py), enqueues
the due slots of periodic tasks (periodic.py), rescues the jobs of workers
that stopped sending heartbeats (rescuer.py), deletes ended jobs past
their retention (pruner.py), and vacuums and analyzes the pgjobs tables
that autovacuum leaves alone (upkeep.py). Each service has a run_once()
(upkeep: due() and run()) that tests call directly.
"""

from pgjobs.maintenance.service import Maintenance

__all__ = ["Maintenance"]
