"""The schema built from the ORM equals the one the hand-written migrations build."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from mfm.store import Database, repo
from mfm.store import schema


def _affinity(declared: str) -> str:
    """SQLite's type affinity rules (https://www.sqlite.org/datatype3.html, 3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if not t or "BLOB" in t:
        return "BLOB"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def schema_snapshot(path: Path) -> dict:
    """Tables, columns, indexes, unique constraints and foreign keys, normalised."""
    con = sqlite3.connect(path)
    try:
        out = {}
        tables = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' "
                             "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
        for table, sql in tables:
            columns = [(name, _affinity(decl), bool(notnull), dflt, pk) for _, name, decl,
                       notnull, dflt, pk in con.execute(f'PRAGMA table_info("{table}")')]
            indexes = []
            for _, name, unique, origin, partial in con.execute(f'PRAGMA index_list("{table}")'):
                cols = tuple(r[2] for r in con.execute(f'PRAGMA index_info("{name}")'))
                # Auto-index names (sqlite_autoindex_T_N) depend on constraint order only.
                indexes.append((name if origin == "c" else "", bool(unique), origin, cols,
                                bool(partial)))
            fks = [(r[2], r[3], r[4], r[5], r[6])  # table, from, to, on_update, on_delete
                   for r in con.execute(f'PRAGMA foreign_key_list("{table}")')]
            out[table] = {
                "columns": columns,
                "indexes": sorted(indexes),
                "foreign_keys": sorted(fks),
                "without_rowid": "WITHOUT ROWID" in sql.upper(),
                "autoincrement": "AUTOINCREMENT" in sql.upper(),
            }
        out["<version>"] = con.execute("SELECT id, version FROM schema_info").fetchall()
        return out
    finally:
        con.close()


def _migrated(path: Path) -> Path:
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.migrate(conn, 0)
    engine.dispose()
    return path


def test_one_migration_per_version():
    assert len(schema.MIGRATIONS) == schema.SCHEMA_VERSION


def test_fresh_schema_equals_migrated_schema(tmp_path):
    Database(str(tmp_path / "fresh.db")).close()
    fresh = schema_snapshot(tmp_path / "fresh.db")
    migrated = schema_snapshot(_migrated(tmp_path / "migrated.db"))
    assert fresh["<version>"] == [(1, schema.SCHEMA_VERSION)]
    assert set(fresh) >= {"schema_info", "dataset_specs", "configs", "runs", "step_metrics",
                          "epoch_metrics", "class_metrics", "latest_metrics"}
    assert fresh == migrated


@pytest.mark.parametrize("change", [
    "ALTER TABLE runs ADD COLUMN extra TEXT",
    "CREATE INDEX ix_step_metrics_epoch ON step_metrics (epoch)",
    "CREATE UNIQUE INDEX ix_runs_name ON runs (name)",
])
def test_snapshot_notices_a_schema_change(tmp_path, change):
    """The comparison above is only worth something if it sees a column or index that one
    side lacks."""
    path = _migrated(tmp_path / "a.db")
    before = schema_snapshot(path)
    con = sqlite3.connect(path)
    con.execute(change)
    con.commit()
    con.close()
    assert schema_snapshot(path) != before


def test_migrated_database_opens_without_changes_and_works(tmp_path):
    path = _migrated(tmp_path / "migrated.db")
    before = schema_snapshot(path)
    with Database(str(path)) as db:
        run_id = repo.create_run(db, config={"x": 1}, epochs_total=1)
        repo.log_epoch(db, run_id, 0, {"acc": 0.5}, [0.5])
        assert repo.latest_metrics(db, run_id) == {"acc": 0.5}
    assert schema_snapshot(path) == before


def test_version_1_database_is_migrated_to_current_keeping_its_runs(tmp_path):
    from sqlalchemy import create_engine

    path = tmp_path / "v1.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.migrate(conn, 0, 1)
        conn.execute(text("INSERT INTO runs (status, created_at, config_json, epochs_total) "
                          "VALUES ('completed', 1.0, '{\"x\": 1}', 3)"))
    engine.dispose()
    with Database(str(path)) as db:
        assert db.schema_version() == schema.SCHEMA_VERSION
        (run,) = repo.list_runs(db)
        assert run.status == "completed" and run.config == {"x": 1} and run.attempt == 0
        repo.update_run(db, run.id, slot="cpu0", resume_requested=True)
        assert repo.get_run(db, run.id).slot == "cpu0"
    migrated = schema_snapshot(path)
    fresh_path = tmp_path / "fresh.db"
    Database(str(fresh_path)).close()
    assert {k: v for k, v in migrated.items() if k != "<version>"} == \
        {k: v for k, v in schema_snapshot(fresh_path).items() if k != "<version>"}


FIXTURE_V3 = Path(__file__).parent / "fixtures" / "v3.db"


def test_a_v3_file_written_by_earlier_code_upgrades_in_place(tmp_path):
    """tests/store/fixtures/v3.db was written by the code of schema version 3 (three runs,
    a spec, a config, metrics). Opening it with today's code migrates it in place: every
    record kept, and each run gets the config hash sweeps match on."""
    import shutil

    from mfm.store.hashing import config_hash
    from mfm.store.schema import SCHEMA_VERSION

    path = tmp_path / "old.db"
    shutil.copy(FIXTURE_V3, path)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT version FROM schema_info").fetchone() == (3,)
        before = {t: con.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                  for t in ("runs", "dataset_specs", "configs", "epoch_metrics",
                            "step_metrics", "class_metrics", "latest_metrics")}
    with Database(str(path)) as db:
        assert db.schema_version() == SCHEMA_VERSION
        runs = {r.id: r for r in repo.list_runs(db)}
        assert [runs[i].status for i in (1, 2, 3)] == ["completed", "queued", "failed"]
        assert runs[1].summary["final"]["acc"] == 0.6
        assert repo.get_class_accuracy(db, 1) == [0.9, 0.2]
        assert repo.get_dataset_spec(db, "digits-if10") is not None
    with sqlite3.connect(path) as con:
        for table, rows in before.items():
            now = con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            width = len(rows[0]) if rows else 0
            assert [r[:width] for r in now] == rows, table
        hashes = dict(con.execute("SELECT id, config_json FROM runs").fetchall())
        for run_id, stored in con.execute("SELECT id, config_hash FROM runs"):
            assert stored == config_hash(hashes[run_id])
