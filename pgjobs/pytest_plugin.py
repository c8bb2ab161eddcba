"""pgjobs' pytest plugin: an App on a database of the test session's own, emptied for each test.

Registered through the `pytest11` entry point, so installing pgjobs is enough.
It only adds fixtures and options; a test run that uses none of them never
connects. Fixtures:

- pgjobs_url (session): the URL of a new database, pgjobs_test_<pid>_<random>,
  made on the server of --pgjobs-url, else $PGJOBS_TEST_URL, else $PGJOBS_URL;
  migrated; dropped when the session ends.
- pgjobs_app_factory (session): how the App is made from that URL. By
  default the App the ini option `pgjobs_app = "package.module:app"` names,
  with its URL replaced, else a bare pgjobs.App(url). Override it in your
  conftest.py to make your App your own way.
- pgjobs_app: that App, with pgjobs' tables emptied before the test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from pgjobs.client.app import App
from pgjobs.core.errors import PgJobsError
from pgjobs.testing import reset, temporary_database


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pgjobs")
    group.addoption(
        "--pgjobs-url",
        default=None,
        help="Postgres server on which the pgjobs_app fixture makes a database of the "
        "session's own (default: $PGJOBS_TEST_URL, then $PGJOBS_URL)",
    )
    parser.addini(
        "pgjobs_app",
        "package.module:app naming the App the pgjobs_app fixture gives, its URL replaced "
        "by the test database's (default: a bare pgjobs.App)",
        default="",
    )


def _server_url(config: pytest.Config) -> str:
    url = config.getoption("pgjobs_url") or os.environ.get("PGJOBS_TEST_URL")
    url = url or os.environ.get("PGJOBS_URL")
    if not url:
        pytest.fail(
            "pgjobs: the pgjobs_app fixture needs a Postgres server to make its test database "
            "on: pass --pgjobs-url, or set $PGJOBS_TEST_URL or $PGJOBS_URL",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def pgjobs_url(pytestconfig: pytest.Config) -> Iterator[str]:
    """A migrated database of this test session's own; dropped at the end."""
    server = _server_url(pytestconfig)
    try:
        with temporary_database(server) as url:
            yield url
    except PgJobsError as exc:  # the database could not be made or migrated
        pytest.fail(f"pgjobs: {exc}", pytrace=False)


def _app_from_spec(spec: str) -> Callable[[str], App]:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        pytest.fail(
            f"pgjobs: the ini option pgjobs_app must look like 'package.module:app', got {spec!r}",
            pytrace=False,
        )

    def make(url: str) -> App:
        from pgjobs.client.loading import load_app

        app = load_app(spec)
        app.url = url  # refused, with a clear error, once the App has connected
        return app

    return make


@pytest.fixture(scope="session")
def pgjobs_app_factory(pytestconfig: pytest.Config) -> Callable[[str], App]:
    """Makes the App that pgjobs_app gives, from the test database's URL; override to change."""
    spec = str(pytestconfig.getini("pgjobs_app") or "").strip()
    return _app_from_spec(spec) if spec else App


@pytest.fixture(scope="session")
def pgjobs_session_app(pgjobs_url: str, pgjobs_app_factory: Callable[[str], App]) -> Iterator[App]:
    """The App on the session's database, made once; closed at the end."""
    try:
        app = pgjobs_app_factory(pgjobs_url)
    except PgJobsError as exc:
        pytest.fail(f"pgjobs: {exc}", pytrace=False)
    if not isinstance(app, App):
        pytest.fail(
            f"pgjobs: pgjobs_app_factory returned a {type(app).__name__}, not a pgjobs.App",
            pytrace=False,
        )
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def pgjobs_app(pgjobs_session_app: App) -> App:
    """The App on the session's database, its pgjobs tables emptied for this test."""
    try:
        reset(pgjobs_session_app)
    except PgJobsError as exc:
        pytest.fail(f"pgjobs: {exc}", pytrace=False)
    return pgjobs_session_app
