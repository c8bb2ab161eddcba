"""load_app(): the App a `module:attribute` spec names (CLI --app, worker processes, pytest)."""

from __future__ import annotations

import importlib
import os
import sys

from pgjobs.client.app import App
from pgjobs.core.errors import ConfigurationError


def load_app(spec: str) -> App:
    """Import `module:attribute` and return the App it names."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"--app must look like 'package.module:app', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import {module_name!r}: {exc}") from None
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise ConfigurationError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise ConfigurationError(f"{spec} is a {type(app).__name__}, not a pgjobs.App")
    return app
