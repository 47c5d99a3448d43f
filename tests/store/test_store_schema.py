"""The schema: what opening an empty database creates (the models, stamped with the head
revision) equals what the Alembic revisions build from nothing, on SQLite and PostgreSQL;
on SQLite it also equals what the hand-written legacy steps build (then stamped). Files
from before Alembic upgrade in place with every record kept; a database of a newer mfm is
refused, unchanged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from mfm.store import Database, StoreError, admin, migrate, repo, schema


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
        has_revision = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                   "AND name = 'alembic_version'").fetchone()[0]
        out["<revision>"] = (con.execute("SELECT version_num FROM alembic_version").fetchall()
                             if has_revision else None)
        return out
    finally:
        con.close()


def portable_snapshot(url: str) -> dict:
    """The schema as SQLAlchemy's inspector sees it, on any backend: tables, columns (type as
    the backend names it, nullability, default), primary keys, foreign keys (with ON
    DELETE), unique constraints, indexes; and the stored versions."""
    engine = create_engine(Database(url, upgrade=False).engine.url)  # plain: no schema work
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out: dict = {}
            for table in sorted(insp.get_table_names()):
                if table.startswith("sqlite_"):
                    continue
                pk = insp.get_pk_constraint(table)
                out[table] = {
                    "columns": [(c["name"], c["type"].compile(engine.dialect), c["nullable"],
                                 None if c.get("default") is None else str(c["default"]))
                                for c in insp.get_columns(table)],
                    "pk": (pk.get("name"), tuple(pk["constrained_columns"])),
                    "fks": sorted((fk.get("name") or "", tuple(fk["constrained_columns"]),
                                   fk["referred_table"], tuple(fk["referred_columns"]),
                                   (fk.get("options") or {}).get("ondelete") or "")
                                  for fk in insp.get_foreign_keys(table)),
                    "uniques": sorted((u.get("name") or "", tuple(u["column_names"]))
                                      for u in insp.get_unique_constraints(table)),
                    "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                                      for i in insp.get_indexes(table)),
                }
            out["<version>"] = [tuple(r) for r in conn.execute(
                text("SELECT id, version FROM schema_info"))]
            out["<revision>"] = [tuple(r) for r in conn.execute(
                text("SELECT version_num FROM alembic_version"))]
            return out
    finally:
        engine.dispose()


def _alembic_built(url: str) -> str:
    """The revisions run by Alembic itself from an empty database, base to head."""
    db = Database(url, upgrade=False)
    try:
        with db.engine.begin() as conn:
            migrate._alembic_upgrade(conn, "head")
    finally:
        db.close()
    return url


def _migrated(path: Path) -> Path:
    """A SQLite file built by the hand-written steps (version 0 to 4), as mfm before Alembic
    left it."""
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        schema.migrate(conn, 0)
    engine.dispose()
    return path


def _legacy_upgraded(path: Path) -> Path:
    _migrated(path)
    Database(str(path)).close()
    return path


def test_one_migration_per_version():
    assert len(schema.MIGRATIONS) == schema.LEGACY_VERSION


def test_head_revision_constant_matches_the_scripts():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate._config())
    assert script.get_heads() == [migrate.HEAD_REVISION] == [migrate.head_revision()]
    assert script.get_base() == migrate.BASELINE_REVISION
    assert migrate.HEAD_REVISION in migrate.known_revisions()


def test_fresh_schema_equals_the_revisions_on_both_backends(new_db_url):
    fresh_url, built_url = new_db_url(), new_db_url()
    Database(fresh_url).close()
    fresh = portable_snapshot(fresh_url)
    built = portable_snapshot(_alembic_built(built_url))
    assert fresh["<version>"] == [(1, schema.SCHEMA_VERSION)]
    assert fresh["<revision>"] == [(migrate.HEAD_REVISION,)]
    assert set(fresh) >= {"schema_info", "dataset_specs", "configs", "runs", "step_metrics",
                          "epoch_metrics", "class_metrics", "latest_metrics", "workers",
                          "sweeps", "sweep_cells", "alembic_version"}
    assert fresh == built
    # and Alembic, asked to compare the models with that database, finds nothing to do
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from mfm.store.models import Base

    with Database(fresh_url) as db, db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_fresh_schema_equals_migrated_schema(tmp_path):
    """SQLite, to the letter (WITHOUT ROWID, AUTOINCREMENT, affinities): created from the
    models == built by the revisions == built by the legacy steps and stamped."""
    Database(str(tmp_path / "fresh.db")).close()
    fresh = schema_snapshot(tmp_path / "fresh.db")
    built = schema_snapshot(Path(_alembic_built(str(tmp_path / "built.db"))))
    legacy = schema_snapshot(_legacy_upgraded(tmp_path / "legacy.db"))
    assert fresh["<version>"] == [(1, schema.SCHEMA_VERSION)]
    assert fresh["<revision>"] == [(migrate.HEAD_REVISION,)]
    assert fresh["runs"]["autoincrement"] and fresh["step_metrics"]["without_rowid"]
    assert fresh == built == legacy


@pytest.mark.parametrize("change", [
    "ALTER TABLE runs ADD COLUMN extra TEXT",
    "CREATE INDEX ix_step_metrics_epoch ON step_metrics (epoch)",
    "CREATE UNIQUE INDEX ix_runs_name ON runs (name)",
    "ALTER TABLE workers ALTER COLUMN pid TYPE integer",
    "ALTER TABLE runs ALTER COLUMN host SET NOT NULL",
])
def test_portable_snapshot_notices_a_schema_change(db_url, change):
    """The comparison on both backends is only worth something if it sees a column, index,
    type or nullability that one side lacks."""
    Database(db_url).close()
    before = portable_snapshot(db_url)
    db = Database(db_url, upgrade=False)
    if db.is_sqlite and "ALTER COLUMN" in change:
        db.close()
        pytest.skip("SQLite cannot alter a column")
    try:
        with db.engine.begin() as conn:
            conn.exec_driver_sql(change)
    finally:
        db.close()
    assert portable_snapshot(db_url) != before


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
    path = _legacy_upgraded(tmp_path / "migrated.db")
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
    with Database(str(path), upgrade=False) as db:
        status = admin.status(db)
        assert (status.state, status.legacy_version, status.revision) == ("legacy", 3, None)
    with Database(str(path)) as db:
        assert db.schema_version() == SCHEMA_VERSION
        assert admin.current_revision(db) == migrate.HEAD_REVISION
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


def test_v3_file_upgrades_through_the_upgrade_function(tmp_path):
    """What ``mfm db upgrade`` does: open without upgrading, upgrade, report."""
    import shutil

    path = tmp_path / "old.db"
    shutil.copy(FIXTURE_V3, path)
    with Database(str(path), upgrade=False) as db:
        assert admin.current_revision(db) is None
        assert admin.upgrade(db).as_pair() == (None, migrate.HEAD_REVISION)
        status = admin.status(db)
        assert (status.state, status.revision, status.head) == (
            "current", migrate.HEAD_REVISION, migrate.HEAD_REVISION)
        assert status.message == f"revision {migrate.HEAD_REVISION} (head)"
        assert admin.upgrade(db).as_pair() == (migrate.HEAD_REVISION, migrate.HEAD_REVISION)
        assert len(repo.list_runs(db)) == 3


def test_status_of_an_empty_database_and_upgrade_creates_it(db_url):
    with Database(db_url, upgrade=False) as db:
        assert admin.status(db).state == "empty"
        assert admin.current_revision(db) is None
        assert admin.upgrade(db).as_pair() == (None, migrate.HEAD_REVISION)
        assert admin.status(db).state == "current"
        repo.create_run(db, config={}, epochs_total=1)


def _set_revision(url: str, revision: str) -> None:
    db = Database(url, upgrade=False)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        db.close()


def test_database_of_a_newer_mfm_is_refused_unchanged(db_url):
    with Database(db_url) as db:
        run_id = repo.create_run(db, config={"a": 1}, epochs_total=1)
    _set_revision(db_url, "9999_future")
    before = portable_snapshot(db_url)
    with pytest.raises(StoreError) as info:
        Database(db_url)
    message = str(info.value)
    assert "\n" not in message and "'9999_future'" in message and "upgrade mfm" in message
    with Database(db_url, upgrade=False) as db:
        # mfm db current / upgrade read it through the same rule: the same line
        with pytest.raises(StoreError) as seen:
            admin.status(db)
        assert str(seen.value) == message
        with pytest.raises(StoreError, match="9999_future"):
            admin.upgrade(db)
    assert portable_snapshot(db_url) == before
    _set_revision(db_url, migrate.HEAD_REVISION)
    with Database(db_url) as db:
        assert repo.get_run(db, run_id).config == {"a": 1}


def _built_at(url: str, revision: str) -> str:
    """A database built by the real revisions from nothing up to ``revision`` (what an
    older mfm left), with one run in it."""
    db = Database(url, upgrade=False)
    try:
        with db.engine.begin() as conn:
            migrate._alembic_upgrade(conn, revision)
            conn.execute(text("INSERT INTO runs (status, created_at, config_json, "
                              "epochs_total) VALUES ('completed', 1.0, '{\"a\": 1}', 3)"))
    finally:
        db.close()
    return url


def _rows(url: str) -> list[tuple]:
    engine = create_engine(Database(url, upgrade=False).engine.url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text("SELECT * FROM runs ORDER BY id"))]
    finally:
        engine.dispose()


def _mfm(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``mfm ARGS`` through its entry point, in this process: (exit code, stdout, stderr)."""
    from mfm.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_revision_names_the_mfm_that_introduced_it():
    assert set(migrate.INTRODUCED_IN) == migrate.known_revisions()
    from mfm import __version__

    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(p) for p in v.split("."))

    assert all(parts(v) <= parts(__version__) for v in migrate.INTRODUCED_IN.values())


@pytest.mark.postgres
def test_shared_database_behind_this_mfm_is_refused_until_mfm_db_upgrade(pg_url, cli_env,
                                                                        capsys):
    """PostgreSQL is shared by hosts that may still run the older mfm: opening an older
    schema refuses it in one line and changes nothing; ``mfm db upgrade`` then upgrades it
    and says from which revision to which."""
    from mfm import __version__
    from mfm.store import OlderSchema

    _built_at(pg_url, "0002")
    with Database(pg_url, upgrade=False) as db:
        shown = db.display  # the URL without its password, as messages name it
    before, rows = portable_snapshot(pg_url), _rows(pg_url)
    assert before["<revision>"] == [("0002",)]
    with pytest.raises(OlderSchema) as info:
        Database(pg_url)
    e = info.value
    assert (e.field, e.found, e.needed, e.mfm_version) == (
        "db", "0002", migrate.HEAD_REVISION, __version__)
    assert (e.found_mfm, e.needed_mfm) == (migrate.INTRODUCED_IN["0002"],
                                          migrate.INTRODUCED_IN[migrate.HEAD_REVISION])
    assert str(e) == (
        f"{shown}: the records are at schema revision 0002 (mfm {e.found_mfm}) and this mfm "
        f"({__version__}) needs revision {migrate.HEAD_REVISION}; a shared database is "
        f"upgraded only when asked: once every host that uses it runs mfm {e.needed_mfm} or "
        f"newer, run mfm db upgrade --db '{shown}'")
    assert portable_snapshot(pg_url) == before and _rows(pg_url) == rows
    # every command says so in one line, through the command line's wording
    code, out, err = _mfm(capsys, "runs", "--db", pg_url)
    assert (code, out, err.splitlines()) == (2, "", [f"error: --db: {e}"])
    code, out, _ = _mfm(capsys, "db", "current", "--db", pg_url)
    assert code == 0 and "revision 0002, behind the head" in out, out
    assert portable_snapshot(pg_url) == before and _rows(pg_url) == rows
    # the explicit upgrade: every record kept
    code, out, err = _mfm(capsys, "db", "upgrade", "--db", pg_url)
    assert code == 0, err
    assert out.splitlines() == [  # named as given (this URL holds no password)
        f"{pg_url}: upgraded from revision 0002 to revision {migrate.HEAD_REVISION} (head)"]
    with Database(pg_url) as db:
        assert admin.status(db).state == "current"
        (run,) = repo.list_runs(db)
        assert run.config == {"a": 1} and run.status == "completed"
    assert [r[:len(rows[0])] for r in _rows(pg_url)] == rows  # new columns come after
    code, out, _ = _mfm(capsys, "db", "upgrade", "--db", pg_url)
    assert (code, out.splitlines()) == (
        0, [f"{pg_url}: already at revision {migrate.HEAD_REVISION} (head)"])


def test_a_sqlite_file_behind_this_mfm_upgrades_itself_on_open(tmp_path):
    """One user's file: no other host to wait for, so opening it upgrades it."""
    path = str(tmp_path / "old.db")
    _built_at(path, "0002")
    with Database(path) as db:
        assert admin.current_revision(db) == migrate.HEAD_REVISION
        (run,) = repo.list_runs(db)
        assert run.config == {"a": 1}
    assert schema_snapshot(Path(path))["<revision>"] == [(migrate.HEAD_REVISION,)]


def test_upgrade_reports_where_the_database_came_from(db_url):
    _built_at(db_url, "0002")
    with Database(db_url, upgrade=False) as db:
        done = admin.upgrade(db)
        assert done.as_pair() == ("0002", migrate.HEAD_REVISION) and done.changed
        assert done.message == (
            f"upgraded from revision 0002 to revision {migrate.HEAD_REVISION} (head)")
        again = admin.upgrade(db)
        assert not again.changed
        assert again.message == f"already at revision {migrate.HEAD_REVISION} (head)"


def test_schema_info_5_without_a_revision_is_refused(tmp_path):
    path = tmp_path / "odd.db"
    Database(str(path)).close()
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE alembic_version")
    con.close()
    with pytest.raises(StoreError, match="damaged or not mfm records .*no alembic_version"):
        Database(str(path))


def _open_and_write(url: str, barrier, out) -> None:
    try:
        barrier.wait(timeout=60)
        with Database(url) as db:
            out.put(("ok", repo.create_run(db, config={}, epochs_total=1)))
    except BaseException as e:  # noqa: BLE001 — reported to the test
        out.put(("error", f"{type(e).__name__}: {e}"))


@pytest.mark.slow  # a real subprocess
def test_concurrent_openers_of_an_empty_database_create_it_once(db_url):
    """Supervisors on several hosts may open a new database at the same moment: one creates
    the schema (SQLite's write lock, PostgreSQL's advisory lock), the others find it."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_and_write, args=(db_url, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [kind for kind, _ in results] == ["ok"] * 4, results
    assert len({run_id for _, run_id in results}) == 4
    snap = portable_snapshot(db_url)
    assert snap["<version>"] == [(1, schema.SCHEMA_VERSION)]
    assert snap["<revision>"] == [(migrate.HEAD_REVISION,)]
