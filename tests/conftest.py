"""Shared fixtures: a real SQLite file per test, a fresh PostgreSQL database per test (when a
server is there), and the environment for CLI runs.

PostgreSQL: tests that need it read ``MFM_TEST_PG_URL`` (a database on a server where the
URL's role may create databases; ``.ci/run`` starts one: ``. .ci/pg-start.sh``) and skip,
saying so, when it is not set. ``db_url`` runs a test on both backends.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_ENV = "MFM_TEST_PG_URL"
PG_AUTH_ENV = "MFM_TEST_PG_AUTH_URL"
_NO_PG = (f"needs a PostgreSQL server: set {PG_ENV} (.ci/run starts one; by hand: "
          "`. .ci/pg-start.sh`, which also defines pg_stop)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"postgres: needs a PostgreSQL server ({PG_ENV})")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "experiments.db"


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The URL of the test server's database (``MFM_TEST_PG_URL``); skips without one."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(_NO_PG)
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg (pip install -e "
                                          "'.[test]')")
    return url


@pytest.fixture(scope="session")
def _pg_admin(pg_server_url: str) -> Iterator[object]:
    from sqlalchemy import create_engine, make_url

    url = make_url(pg_server_url).set(database="postgres")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


_PG_NAMES = itertools.count()


@pytest.fixture
def pg_new_database(pg_server_url: str, _pg_admin) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty PostgreSQL databases (URLs) for this test; all are dropped
    afterwards, even with connections still open."""
    from sqlalchemy import make_url, text

    made: list[str] = []

    def make() -> str:
        name = f"mfm_test_{os.getpid()}_{next(_PG_NAMES)}"
        with _pg_admin.connect() as conn:  # type: ignore[attr-defined]
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)

    yield make
    with _pg_admin.connect() as conn:  # type: ignore[attr-defined]
        for name in made:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url(pg_new_database: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database for this test."""
    return pg_new_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """Runs a test once per backend ("sqlite", "postgresql")."""
    return request.param


@pytest.fixture
def new_db_url(backend: str, tmp_path: Path,
               request: pytest.FixtureRequest) -> Callable[[], str]:
    """Makes new, empty databases of this test's backend: a SQLite file (a plain path, as
    users give it) or a PostgreSQL database (a URL)."""
    if backend == "postgresql":
        return request.getfixturevalue("pg_new_database")
    names = itertools.count()
    return lambda: str(tmp_path / f"experiments-{next(names)}.db")


@pytest.fixture
def db_url(new_db_url: Callable[[], str]) -> str:
    """Where a test's records live, once per backend (see ``new_db_url``)."""
    return new_db_url()


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Keep MFM_* from the developer's shell out of tests; runs/ goes under tmp_path."""
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    env = dict(os.environ)
    return env


FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """SVG snapshot tests render whole screens and compare pictures: they belong to the full
    run (CI), not to the inner loop (``pytest -m 'not slow'``)."""
    for item in items:
        if "snap_compare" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
