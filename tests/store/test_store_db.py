"""Database: targets, file checks, per-connection pragmas, transactions, schema version."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from mfm.store import Database, StoreError, repo, resolve_db_target
from mfm.store import schema
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
    assert str(info.value) == f"--db: '{path}' is not a SQLite database"
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


def test_session_scope_rolls_back_and_reraises(db_path):
    with Database(str(db_path)) as db:
        with pytest.raises(RuntimeError, match="boom"):
            with db.session_scope() as session:
                session.add(DatasetSpec(name="x", spec_json="{}", created_at=0.0))
                session.flush()
                raise RuntimeError("boom")
        assert repo.get_dataset_spec(db, "x") is None


def test_session_scope_maps_database_errors_to_one_line_store_error(db_path):
    with Database(str(db_path)) as db:
        with pytest.raises(StoreError) as info:
            with db.session_scope() as session:
                session.execute(text("SELECT * FROM no_such_table"))
    message = str(info.value)
    assert "no such table: no_such_table" in message and "\n" not in message


def test_newer_schema_version_is_refused(db_path):
    Database(str(db_path)).close()
    con = sqlite3.connect(db_path)
    con.execute("UPDATE schema_info SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(StoreError) as info:
        Database(str(db_path))
    assert str(info.value) == (f"database schema version 99 is newer than this mfm "
                               f"({schema.SCHEMA_VERSION}); upgrade mfm")


def test_reopening_keeps_data_and_version(db_path):
    with Database(str(db_path)) as db:
        run_id = repo.create_run(db, config={"a": 1}, epochs_total=2)
    with Database(str(db_path)) as db:
        assert db.schema_version() == schema.SCHEMA_VERSION
        assert repo.get_run(db, run_id).config == {"a": 1}


def test_store_imports_no_torch_textual_or_click():
    code = ("import sys, mfm.store; "
            "print(','.join(m for m in ('torch', 'textual', 'click') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == ""
