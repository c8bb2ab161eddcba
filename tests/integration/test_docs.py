"""The documentation's promises that a machine can check.

- Every code block marked runnable — an HTML comment `<!-- runnable -->` on the line right
  before its fence, which Material renders as nothing — in README.md and docs/**/*.md runs as it
  stands, in a fresh Python process, against a fresh migrated database named by $PGJOBS_URL.
  ```python blocks run as a script; ```sql blocks run as one simple-protocol query.
- Every relative link (and image) in README.md, CHANGELOG.md, bench/*.md and docs/**/*.md points
  at a file that exists, and an anchor into a Markdown file at one of its headings.
- README.md stays an overview: at most 200 lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as psql

from tests.support.common import ROOT, with_dbname

MARK = "<!-- runnable -->"
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(\w*)(.*)$")
RUNNABLE_LANGUAGES = frozenset({"python", "sql"})


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "bench").glob("*.md"))]
    return [*files, *sorted((ROOT / "docs").rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{rel(self.path)}:{self.line}"


def fenced_blocks(path: Path) -> Iterator[tuple[int, str, str, bool]]:
    """(line of the opening fence, language, code, marked runnable) for each fenced block."""
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks, language = m.group(1), m.group(2), m.group(3)
        marked = i > 0 and lines[i - 1].strip() == MARK
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].startswith(indent) and lines[j].strip().startswith(ticks)
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        yield i + 1, language, textwrap.dedent("\n".join(body)) + "\n", marked
        i = j + 1


def runnable_blocks() -> list[Block]:
    return [
        Block(path, line, language, code)
        for path in doc_files()
        for line, language, code, marked in fenced_blocks(path)
        if marked
    ]


BLOCKS = runnable_blocks()


def test_every_runnable_mark_is_on_a_block_that_can_run() -> None:
    for path in doc_files():
        lines = path.read_text().splitlines()
        for n, line in enumerate(lines):
            if line.strip() != MARK:
                continue
            nxt = lines[n + 1] if n + 1 < len(lines) else ""
            m = FENCE.match(nxt)
            assert m, f"{rel(path)}:{n + 1}: {MARK} is not right before a code fence"
            assert m.group(3) in RUNNABLE_LANGUAGES, (
                f"{rel(path)}:{n + 2}: a runnable block must be python or sql, not {m.group(3)!r}"
            )


def test_the_readme_quickstart_is_runnable() -> None:
    readme = [b for b in BLOCKS if b.path.name == "README.md" and b.path.parent == ROOT]
    assert any("enqueue(" in b.code and ".wait(" in b.code for b in readme), (
        "README.md's quickstart (define, migrate, enqueue, run a worker, wait) must be marked "
        f"{MARK}"
    )


@pytest.fixture
def fresh_database(admin_url: str) -> Iterator[str]:
    """A migrated database of this block's own, dropped after it."""
    from pgjobs.migrations import upgrade

    name = f"pgjobs_docs_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(psql.SQL("CREATE DATABASE {}").format(psql.Identifier(name)))
    url = with_dbname(admin_url, name)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                psql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psql.Identifier(name))
            )


RUN_SQL = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute(open(sys.argv[2]).read())
"""


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
@pytest.mark.processes
def test_runnable_block_runs(block: Block, fresh_database: str, tmp_path: Path) -> None:
    script = tmp_path / ("block.py" if block.language == "python" else "block.sql")
    script.write_text(block.code)
    if block.language == "python":
        command = [sys.executable, str(script)]
    else:
        command = [sys.executable, "-c", RUN_SQL, fresh_database, str(script)]
    env = {**os.environ, "PGJOBS_URL": fresh_database, "PYTHONPATH": str(ROOT)}
    env.pop("PGJOBS_APP", None)
    try:
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{block.where}: the {block.language} block did not end within {e.timeout} s")
    if done.returncode != 0:
        pytest.fail(
            f"{block.where}: the {block.language} block failed (exit {done.returncode})\n"
            f"{done.stdout}{done.stderr}",
            pytrace=False,
        )


# -- links ----------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def slug(heading: str) -> str:
    """The anchor of a heading, as GitHub and MkDocs' toc make it for plain headings."""
    text = INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return re.sub(r"[\s]+", "-", text)


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}_{n}")  # MkDocs' way of numbering repeats
            found.add(base if n == 0 else f"{base}-{n}")  # and GitHub's
    return found


def prose_lines(path: Path) -> Iterator[str]:
    """The lines of a Markdown file outside its fenced code blocks."""
    fence: str | None = None
    for line in path.read_text().splitlines():
        m = FENCE.match(line)
        if m and (fence is None or m.group(2).startswith(fence)):
            fence = m.group(2)[:3] if fence is None else None
            continue
        if fence is None:
            yield line


def relative_links(path: Path) -> Iterator[str]:
    for line in prose_lines(path):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            yield target


@pytest.mark.parametrize("path", doc_files(), ids=rel)
def test_every_relative_link_resolves(path: Path) -> None:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target} (no such file: {dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {rel(dest)})")
    assert not broken, f"{rel(path)}: broken links: " + "; ".join(broken)


def test_readme_is_an_overview() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: the rest belongs in docs/"
