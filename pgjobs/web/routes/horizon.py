"""/api/horizon: whatever holds the xmin horizon back, so that VACUUM cannot clean up."""

from __future__ import annotations

from typing import Any

from pgjobs.observe import horizon
from pgjobs.observe.horizon import Horizon
from pgjobs.web.context import CurrentApp
from pgjobs.web.routing import Routes
from pgjobs.web.schemas import HorizonView

routes = Routes()


@routes.get("/api/horizon", response_model=HorizonView, tags=["health"])
async def xmin_horizon(app: CurrentApp) -> Any:
    """Who holds the xmin horizon back, and whether for longer than the threshold."""
    now: Horizon = await app.database.arun(horizon.read_op(app.horizon_max_age))
    held = {h.key for h in now.held}
    return {
        "held": now.is_held,
        "age_seconds": now.age,
        "age_xids": now.xmin_age,
        "max_age": now.max_age,
        "message": now.summary() if now.is_held else None,
        "holders": [
            {**h.__dict__, "held": h.key in held, "description": h.describe()} for h in now.holders
        ],
    }
