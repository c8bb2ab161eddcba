"""The web API's endpoints, one module per area; pgjobs.web.api.router() serves them for an App.

Each module declares its endpoints on a `Routes` table (pgjobs.web.routing) and
receives the App through the dependencies of pgjobs.web.context.
"""

from __future__ import annotations

from pgjobs.web.routes import (
    dashboard,
    dead_letters,
    health,
    horizon,
    jobs,
    queues,
    workers,
    workflows,
)
from pgjobs.web.routing import Routes

#: The endpoints behind the API's guard and database gate, in the order the schema lists them.
API: tuple[Routes, ...] = (
    jobs.routes,
    workflows.routes,
    queues.routes,
    workers.routes,
    horizon.routes,
    dead_letters.routes,
    health.routes,
)
#: /healthz: no token needed, and its own 503.
PROBES = health.probes
#: The dashboard page: no token needed, no database.
DASHBOARD = dashboard.routes

__all__ = ["API", "DASHBOARD", "PROBES"]
