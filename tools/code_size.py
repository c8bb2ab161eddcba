"""Fail if a class in pgjobs/ is longer than 400 lines or a function longer than 80.

A function's length runs from its `def` line to its last line (decorators aside). Run it as
`python tools/code_size.py`; `make lint` does.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMITS = {"class": 400, "function": 80}


def too_long(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):
            kind = "class"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = "function"
        else:
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > LIMITS[kind]:
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found.append(f"{where}: {kind} {node.name} is {length} lines (at most {LIMITS[kind]})")
    return found


def main() -> int:
    found = [line for p in sorted((ROOT / "pgjobs").rglob("*.py")) for line in too_long(p)]
    for line in found:
        print(line)
    print(f"{len(found)} classes or functions over the limits")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
