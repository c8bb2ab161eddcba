"""The web extra: JSON API, Prometheus metrics and dashboard (`pip install pgjobs[web]`)."""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        f"pgjobs.web needs the web extra: pip install 'pgjobs[web]' ({exc.name} is missing)"
    ) from exc

from pgjobs.web.api import create_app, router

__all__ = ["create_app", "router"]
