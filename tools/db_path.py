"""Fail if a module outside pgjobs/db opens a psycopg connection or builds a pool.

Every connection and pool comes from pgjobs.db.connections, so that the settings they
need (keepalives, a pooler's rules, the adapters, reconnection) are written once. This
finds, in every module of pgjobs outside pgjobs/db, a call of `connect` on a psycopg
name (psycopg.connect, psycopg.AsyncConnection.connect, ...) and a call of a pool class:
one of psycopg_pool's, or driver.Pool / driver.AsyncPool. Names are followed through
their imports (`import psycopg as pg`, `from psycopg import AsyncConnection`,
`from pgjobs.db import driver as _db`). Run it as `python tools/db_path.py`.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "pgjobs"
#: The package allowed to connect: the one factory lives there.
ALLOWED = PACKAGE / "db"
#: pgjobs' own pool classes, which only the factory builds.
OWN_POOLS = frozenset({"pgjobs.db.driver.Pool", "pgjobs.db.driver.AsyncPool"})


def imported_names(tree: ast.Module) -> dict[str, str]:
    """Each name a module binds by import, and the dotted path it stands for."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    names[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def dotted(node: ast.expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


def forbidden(target: str) -> bool:
    """Whether a call of `target` (a full dotted path) opens a connection or builds a pool."""
    root = target.split(".")[0]
    if root == "psycopg" and target.endswith(".connect"):
        return True
    if root == "psycopg_pool" and target.endswith("Pool"):
        return True
    return target in OWN_POOLS


def offences(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    names = imported_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        parts = dotted(node.func)
        if parts is None or parts[0] not in names:
            continue
        target = ".".join([names[parts[0]], *parts[1:]])
        if forbidden(target):
            yield node.lineno, target


def main() -> int:
    found = checked = 0
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(ALLOWED):
            continue
        checked += 1
        for line, target in offences(path):
            found += 1
            print(
                f"{path.relative_to(ROOT)}:{line}: calls {target}: connections and pools "
                "come from pgjobs.db.connections"
            )
    print(f"{checked} modules outside pgjobs/db, {found} connections or pools of their own")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
