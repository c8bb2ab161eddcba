"""Logging set-up, by the path applications import it from.

`from pgjobs.logs import configure_logging, JsonFormatter` (one line per transition on the
`pgjobs.jobs` logger, as text or JSON); they live in pgjobs.observe.logs.
"""

from pgjobs.observe.logs import EXTRA_KEY, FORMATS, JsonFormatter, configure_logging, parse_levels

__all__ = ["EXTRA_KEY", "FORMATS", "JsonFormatter", "configure_logging", "parse_levels"]
