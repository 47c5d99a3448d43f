"""Database: targets, file checks, per-connection pragmas, transactions, schema version; and
PostgreSQL targets that cannot be opened (unreachable, wrong password, missing database or
role, unknown driver): one line each, never showing the password."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from mfm import __version__
from mfm.cli.errors import cli_message
from mfm.store import Database, NewerSchema, StoreError, repo, resolve_db_target, schema
from mfm.store.models import DatasetSpec


def test_resolve_db_target_prefers_cli_then_env_then_default():
    assert resolve_db_target("a.db", {"MFM_DB": "b.db"}) == "a.db"
    assert resolve_db_target(None, {"MFM_DB": "b.db"}) == "b.db"
    assert resolve_db_target(None, {}) == "experiments.db"


def test_relative_path_becomes_absolute_sqlite_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with Database("rel.db") as db:
        assert db.url == f"sqlite:///{tmp_path / 'rel.db'}"
        assert db.path == tmp_path / "rel.db"
    assert (tmp_path / "rel.db").read_bytes()[:16] == b"SQLite format 3\x00"


def test_sqlalchemy_url_target_is_used_as_given(db_path):
    with Database(f"sqlite:///{db_path}") as db:
        run_id = repo.create_run(db, config={}, epochs_total=1)
    with Database(str(db_path)) as db:
        assert repo.get_run(db, run_id) is not None


def test_store_error_is_one_line():
    assert str(StoreError("first\n  second\n")) == "first second"


@pytest.mark.parametrize("as_url", [False, True])
def test_not_a_sqlite_file_is_refused_and_left_untouched(tmp_path, as_url):
    path = tmp_path / "notes.txt"
    content = b"these are my notes, not a database\n" * 10
    path.write_bytes(content)
    target = f"sqlite:///{path}" if as_url else str(path)
    with pytest.raises(StoreError) as info:
        Database(target)
    assert str(info.value) == f"'{path}' is not a SQLite database"
    assert info.value.field == "db"
    assert cli_message(info.value) == f"--db: '{path}' is not a SQLite database"
    assert path.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_missing_parent_directory_is_named(tmp_path):
    target = tmp_path / "no-such-dir" / "experiments.db"
    with pytest.raises(StoreError, match="no-such-dir"):
        Database(str(target))
    assert not target.parent.exists()


def test_directory_target_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a directory"):
        Database(str(tmp_path))


def test_empty_existing_file_becomes_a_database(db_path):
    db_path.touch()
    with Database(str(db_path)) as db:
        assert db.schema_version() == schema.SCHEMA_VERSION


def test_foreign_postgresql_database_is_refused(pg_url):
    from sqlalchemy import create_engine, inspect

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE invoices (id integer PRIMARY KEY)")
    try:
        with pytest.raises(StoreError, match="holds tables that are not mfm records"):
            Database(pg_url)
        with engine.connect() as conn:
            assert inspect(conn).get_table_names() == ["invoices"]
    finally:
        engine.dispose()


def test_foreign_database_is_refused(db_path):
    con = sqlite3.connect(db_path)
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="not mfm records"):
        Database(str(db_path))
    con = sqlite3.connect(db_path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables == {"invoices"}


def test_pragmas_are_set_on_every_new_connection(db_path):
    with Database(str(db_path)) as db:
        db.engine.dispose()  # make sure the next connection is a new one
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    plain = sqlite3.connect(db_path)  # WAL persists in the file itself
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def _try_write_lock(db_path: Path) -> bool:
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as e:
        assert "locked" in str(e)
        return False
    finally:
        other.close()


def test_write_sessions_take_the_write_lock_at_begin(db_path):
    """A writing session holds the write lock from its first statement (BEGIN IMMEDIATE), so
    concurrent writers wait on busy_timeout rather than failing on a lock upgrade; reading
    sessions take none."""
    with Database(str(db_path)) as db:
        with db.session_scope() as session:
            session.execute(text("SELECT 1 FROM runs")).all()
            assert not _try_write_lock(db_path)
        assert _try_write_lock(db_path)
        with db.session_scope(read_only=True) as session:
            session.execute(text("SELECT 1 FROM runs")).all()
            assert _try_write_lock(db_path)


def test_session_scope_rolls_back_and_reraises(db_url):
    with Database(db_url) as db:
        with pytest.raises(RuntimeError, match="boom"):
            with db.session_scope() as session:
                session.add(DatasetSpec(name="x", spec_json="{}", created_at=0.0))
                session.flush()
                raise RuntimeError("boom")
        assert repo.get_dataset_spec(db, "x") is None


def test_session_scope_maps_database_errors_to_one_line_store_error(db_url):
    with Database(db_url) as db:
        with pytest.raises(StoreError) as info:
            with db.session_scope() as session:
                session.execute(text("SELECT * FROM no_such_table"))
    message = str(info.value)
    said = ("no such table: no_such_table" if db.is_sqlite
            else 'relation "no_such_table" does not exist')
    assert said in message and "\n" not in message


def test_newer_schema_version_is_refused(db_path):
    Database(str(db_path)).close()
    con = sqlite3.connect(db_path)
    con.execute("UPDATE schema_info SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(StoreError) as info:
        Database(str(db_path))
    assert isinstance(info.value, NewerSchema) and info.value.field == "db"
    assert info.value.found == "schema version 99"
    assert str(info.value) == (f"'{db_path}' has schema version 99, newer than this mfm "
                               f"({__version__}) knows ({schema.SCHEMA_VERSION}): a newer mfm "
                               "wrote it; upgrade mfm on this host")


def test_reopening_keeps_data_and_version(db_url):
    with Database(db_url) as db:
        run_id = repo.create_run(db, config={"a": 1}, epochs_total=2)
    with Database(db_url) as db:
        assert db.schema_version() == schema.SCHEMA_VERSION
        assert repo.get_run(db, run_id).config == {"a": 1}


@pytest.mark.slow  # a real subprocess
def test_store_imports_no_torch_textual_or_click():
    code = ("import sys, mfm.store; "
            "print(','.join(m for m in ('torch', 'textual', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == ""


# -- PostgreSQL: targets that cannot be opened, one line each, the password never shown ------

PASSWORD = "s3cret-Pa55"


def _refused(target: str, *parts: str) -> str:
    pytest.importorskip("psycopg", reason="needs psycopg (pip install -e '.[test]')")
    with pytest.raises(StoreError) as info:
        Database(target)
    message = cli_message(info.value)
    assert "\n" not in message and PASSWORD not in message, message
    for part in parts:
        assert part in message, message
    return message


def test_unreachable_server_is_one_line_without_the_password():
    """No server needed: nothing listens on port 1, nor in a socket folder that does not
    exist."""
    _refused(f"postgresql+psycopg://mfm:{PASSWORD}@127.0.0.1:1/mfm",
             "--db: cannot reach the PostgreSQL server of "
             "postgresql+psycopg://mfm:***@127.0.0.1:1/mfm (", "Connection refused",
             "check the host and port, and that the server is running")
    _refused(f"postgresql+psycopg://mfm:{PASSWORD}@/mfm?host=/no/such/socket/dir",
             "cannot reach the PostgreSQL server of "
             "postgresql+psycopg://mfm:***@/mfm?host=/no/such/socket/dir")


@pytest.mark.parametrize("target, said", [
    (f"postgresql+nosuchdriver://mfm:{PASSWORD}@db.example/mfm",
     "--db: postgresql+nosuchdriver://mfm:***@db.example/mfm: unknown database driver "
     "'postgresql+nosuchdriver'; use postgresql+psycopg://user@host/dbname or a SQLite file"),
    (f"mysql://mfm:{PASSWORD}@db.example/mfm",
     "--db: mysql://mfm:***@db.example/mfm: the 'mysql' backend is not supported; use a "
     "SQLite file or postgresql+psycopg://user@host/dbname"),
    (f"postgresql+psycopg://mfm:{PASSWORD}@db.example:port/mfm",
     "--db: 'postgresql+psycopg://mfm:***@db.example:port/mfm' is not a valid database URL"),
])
def test_unknown_driver_backend_or_bad_url_is_one_line_without_the_password(target, said):
    assert _refused(target).startswith(said)


@pytest.mark.postgres
def test_database_that_does_not_exist(pg_server_url):
    from sqlalchemy import make_url

    url = make_url(pg_server_url).set(database="mfm_no_such_db", password=PASSWORD)
    _refused(url.render_as_string(hide_password=False),
             ": database 'mfm_no_such_db' does not exist on that server; create it "
             "(createdb mfm_no_such_db) or fix the URL", "postgres:***@/mfm_no_such_db")


@pytest.mark.postgres
def test_role_that_does_not_exist(pg_server_url):
    from sqlalchemy import make_url

    url = make_url(pg_server_url).set(username="mfm_nobody", password=PASSWORD)
    _refused(url.render_as_string(hide_password=False),
             ": role 'mfm_nobody' does not exist on that server", "mfm_nobody:***@")


@pytest.fixture
def pg_auth_url(pg_url, _pg_admin) -> str:
    """A fresh database owned by a role whose password the server checks (scram-sha-256;
    the other roles of the test server are trusted, so any password would do for them)."""
    import os

    from conftest import PG_AUTH_ENV
    from sqlalchemy import make_url

    auth = os.environ.get(PG_AUTH_ENV)
    if not auth:
        pytest.skip(f"needs {PG_AUTH_ENV}: a role with a password (.ci/pg-start.sh makes one)")
    auth_url, fresh = make_url(auth), make_url(pg_url)
    with _pg_admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{fresh.database}" OWNER TO "{auth_url.username}"'))
    return auth_url.set(database=fresh.database).render_as_string(hide_password=False)


@pytest.mark.postgres
def test_wrong_password(pg_auth_url):
    from sqlalchemy import make_url

    right = make_url(pg_auth_url)
    with Database(pg_auth_url):
        pass  # the right one opens
    wrong = right.set(password=PASSWORD)
    _refused(wrong.render_as_string(hide_password=False),
             f"password authentication failed for user '{right.username}'",
             f"{right.username}:***@", "check the password")
    assert right.password not in _refused(wrong.render_as_string(hide_password=False))
    _refused(right._replace(password=None).render_as_string(hide_password=False),
             f"the server asks user '{right.username}' for a password and none was given")


@pytest.mark.postgres
def test_errors_after_opening_never_show_the_password(pg_auth_url):
    from sqlalchemy import make_url

    password = make_url(pg_auth_url).password
    with Database(pg_auth_url) as db:
        assert password not in repr(db) and password not in db.url
        assert password not in db.display
        with pytest.raises(StoreError) as info:
            with db.session_scope() as session:
                session.execute(text("SELECT * FROM no_such_table"))
    message = str(info.value)
    assert 'relation "no_such_table" does not exist' in message and "\n" not in message
    assert password not in message and "mfm_pw:***@" in message


@pytest.mark.postgres
def test_older_shared_schema_is_refused_and_upgraded_without_showing_the_password(
        pg_auth_url, cli_env):
    from click.testing import CliRunner
    from sqlalchemy import make_url

    from mfm.cli.main import cli
    from mfm.store import OlderSchema, migrate

    password = make_url(pg_auth_url).password
    with Database(pg_auth_url, upgrade=False) as db, db.engine.begin() as conn:
        migrate._alembic_upgrade(conn, "0002")  # what an older mfm built
    with pytest.raises(OlderSchema) as info:
        Database(pg_auth_url)
    message = str(info.value)
    assert password not in message and "\n" not in message
    assert "run mfm db upgrade --db 'postgresql+psycopg://mfm_pw:***@/" in message
    for args, said in ((["db", "current"], "behind the head"),
                       (["db", "upgrade"], "upgraded from revision 0002 to revision")):
        res = CliRunner().invoke(cli, [*args, "--db", pg_auth_url])
        assert res.exit_code == 0, res.output
        assert password not in res.output and "mfm_pw:***@" in res.output and said in res.output
    with Database(pg_auth_url):
        pass  # upgraded: it opens


@pytest.mark.postgres
def test_plain_postgresql_url_means_psycopg(pg_url):
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with Database(plain) as db:
        assert db.engine.url.drivername == "postgresql+psycopg"
        assert db.schema_version() == schema.SCHEMA_VERSION


def test_unreachable_server_through_the_cli_is_one_error_line(cli_env):
    pytest.importorskip("psycopg", reason="needs psycopg (pip install -e '.[test]')")
    from click.testing import CliRunner

    from mfm.cli.main import cli

    res = CliRunner().invoke(cli, ["runs", "--db",
                                   f"postgresql+psycopg://mfm:{PASSWORD}@127.0.0.1:1/mfm"])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: --db: cannot reach the PostgreSQL server of "
        "postgresql+psycopg://mfm:***@127.0.0.1:1/mfm"), lines
    assert PASSWORD not in res.output
