"""Loads the named statements by name: the one place the library's SQL comes from.

They live in `sql/queries.sql` and, by area, in `sql/queries/*.sql`; a name is unique
across all of them, and a statement may fill a `{slot}` with one from another file.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

# pgjobs/ itself: this module is pgjobs/db/queries.py.
_HERE = Path(__file__).resolve().parent.parent


def resource_dir(name: str) -> Path:
    """A folder shipped with pgjobs (`sql` or `alembic`): inside the wheel, or beside a checkout."""
    for candidate in (_HERE / name, _HERE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"pgjobs cannot find its {name}/ folder near {_HERE}")


_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def files() -> list[Path]:
    """The files of named statements: sql/queries.sql, then sql/queries/*.sql by name."""
    folder = resource_dir("sql")
    return [folder / "queries.sql", *sorted((folder / "queries").glob("*.sql"))]


@functools.cache
def _load() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in files():
        parts = _NAME.split(path.read_text())
        # parts = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"query {name!r} is named twice (again in {path.name})")
            lines = [ln for ln in body.strip().splitlines() if not ln.lstrip().startswith("--")]
            queries[name] = "\n".join(lines).strip().rstrip(";")
    return {name: _compose(text, queries) for name, text in queries.items()}


_SLOT = re.compile(r"\{(\w+)(\.ctes)?\}")


def _compose(text: str, queries: dict[str, str]) -> str:
    """Fill {name} with another statement, and {name.ctes} with its WITH list alone."""

    def fill(m: re.Match[str]) -> str:
        other = queries.get(m.group(1))
        if other is None:
            return m.group(0)  # not a slot: e.g. an array literal such as '{a}'

        if not m.group(2):
            return other
        # The CTEs: after the leading WITH, up to the statement's own final
        # SELECT, the one line that starts at the left margin.
        head, _, _ = other.removeprefix("WITH").rpartition("\nSELECT ")
        return head.strip()

    return _SLOT.sub(fill, text) if "{" in text else text


def sql(name: str) -> str:
    """The text of the named query."""
    try:
        return _load()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/") from None


def names() -> list[str]:
    """The names of every named statement in sql/."""
    return list(_load())
