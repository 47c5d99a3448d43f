"""The hand-written schema versions 1..4 of SQLite files from before Alembic (the legacy
path), and ``schema_info``.

``MIGRATIONS[i]`` takes a SQLite database at version ``i`` to version ``i + 1`` (version 0 is
the empty database). They are frozen: schema changes are Alembic revisions now
(:mod:`mfm.store.migrate`, ``mfm/store/migrations/versions``). A file at version 1..4 is
brought to version 4 by these steps, then stamped with the Alembic baseline (which is the
version-4 schema) and ``schema_info.version`` becomes ``SCHEMA_VERSION`` (5) for good: mfm
releases from before Alembic refuse such a file as newer than themselves.

All functions here run inside a transaction the caller holds (``BEGIN IMMEDIATE`` on SQLite,
so concurrent openers of a file wait for the first one instead of racing it).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, text

from mfm.text import visible

__all__ = ["SCHEMA_VERSION", "LEGACY_VERSION", "MIGRATIONS", "SchemaVersionError",
           "read_version", "write_version", "migrate", "user_tables"]

# The last hand-written version: the schema the Alembic baseline revision creates.
LEGACY_VERSION = 4
# schema_info.version of every database Alembic manages (its revision is in alembic_version).
SCHEMA_VERSION = 5


def _v1_schema_info(conn: Connection) -> None:
    """Version 1, step 1: the table that holds the schema version."""
    conn.exec_driver_sql("""CREATE TABLE schema_info (
            id INTEGER NOT NULL,
            version INTEGER NOT NULL,
            CONSTRAINT pk_schema_info PRIMARY KEY (id)
        )""")


def _v1_named_things(conn: Connection) -> None:
    """Version 1, step 2: named dataset specs and configs."""
    for sql in (
        """CREATE TABLE dataset_specs (
            id INTEGER NOT NULL,
            name TEXT NOT NULL,
            spec_json TEXT NOT NULL,
            created_at REAL NOT NULL,
            CONSTRAINT pk_dataset_specs PRIMARY KEY (id),
            CONSTRAINT uq_dataset_specs_name UNIQUE (name)
        )""",
        """CREATE TABLE configs (
            id INTEGER NOT NULL,
            name TEXT NOT NULL,
            version INTEGER NOT NULL,
            config_json TEXT NOT NULL,
            created_at REAL NOT NULL,
            CONSTRAINT pk_configs PRIMARY KEY (id),
            CONSTRAINT uq_configs_name_version UNIQUE (name, version)
        )""",
    ):
        conn.exec_driver_sql(sql)


def _v1_runs(conn: Connection) -> None:
    """Version 1, step 3: the runs and their indexes."""
    for sql in (
        """CREATE TABLE runs (
            id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            name TEXT,
            status TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            host TEXT,
            pid INTEGER,
            device TEXT,
            config_json TEXT NOT NULL,
            split_hash TEXT,
            error TEXT,
            summary_json TEXT,
            class_counts_json TEXT,
            confusion_json TEXT,
            epochs_total INTEGER NOT NULL,
            epoch INTEGER,
            checkpoint_dir TEXT,
            log_path TEXT,
            heartbeat_at REAL,
            dataset_spec_id INTEGER,
            config_id INTEGER,
            CONSTRAINT fk_runs_dataset_spec_id_dataset_specs FOREIGN KEY (dataset_spec_id)
                REFERENCES dataset_specs (id) ON DELETE SET NULL,
            CONSTRAINT fk_runs_config_id_configs FOREIGN KEY (config_id) REFERENCES configs (id)
        )""",
        "CREATE INDEX ix_runs_created_at ON runs (created_at)",
        "CREATE INDEX ix_runs_status ON runs (status)",
    ):
        conn.exec_driver_sql(sql)


def _v1_metrics(conn: Connection) -> None:
    """Version 1, step 4: step, epoch, per-class and latest metrics (WITHOUT ROWID)."""
    for sql in (
        """CREATE TABLE step_metrics (
            run_id INTEGER NOT NULL,
            "key" TEXT NOT NULL,
            step INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            value REAL,
            at REAL NOT NULL,
            CONSTRAINT pk_step_metrics PRIMARY KEY (run_id, "key", step),
            CONSTRAINT fk_step_metrics_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (id) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        """CREATE TABLE epoch_metrics (
            run_id INTEGER NOT NULL,
            "key" TEXT NOT NULL,
            epoch INTEGER NOT NULL,
            value REAL,
            at REAL NOT NULL,
            CONSTRAINT pk_epoch_metrics PRIMARY KEY (run_id, "key", epoch),
            CONSTRAINT fk_epoch_metrics_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (id) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        """CREATE TABLE class_metrics (
            run_id INTEGER NOT NULL,
            epoch INTEGER NOT NULL,
            kind TEXT NOT NULL DEFAULT 'acc',
            values_json TEXT NOT NULL,
            CONSTRAINT pk_class_metrics PRIMARY KEY (run_id, epoch, kind),
            CONSTRAINT fk_class_metrics_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (id) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        """CREATE TABLE latest_metrics (
            run_id INTEGER NOT NULL,
            "key" TEXT NOT NULL,
            value REAL,
            step INTEGER,
            epoch INTEGER,
            CONSTRAINT pk_latest_metrics PRIMARY KEY (run_id, "key"),
            CONSTRAINT fk_latest_metrics_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (id) ON DELETE CASCADE
        ) WITHOUT ROWID""",
    ):
        conn.exec_driver_sql(sql)


def _v0_to_v1(conn: Connection) -> None:
    """The first schema, from an empty database."""
    for step in (_v1_schema_info, _v1_named_things, _v1_runs, _v1_metrics):
        step(conn)


def _v1_to_v2(conn: Connection) -> None:
    """The run queue: slot, process identity, cancel/resume requests, attempts, code version;
    and the workers (supervisors) table."""
    for sql in (
        "ALTER TABLE runs ADD COLUMN queued_at REAL",
        "ALTER TABLE runs ADD COLUMN slot TEXT",
        "ALTER TABLE runs ADD COLUMN proc_start TEXT",
        "ALTER TABLE runs ADD COLUMN cancel_requested_at REAL",
        "ALTER TABLE runs ADD COLUMN resume_requested INTEGER",
        "ALTER TABLE runs ADD COLUMN attempt INTEGER",
        "ALTER TABLE runs ADD COLUMN code_version TEXT",
        """CREATE TABLE workers (
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            proc_start TEXT,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            slots_json TEXT NOT NULL,
            stopped_at REAL,
            CONSTRAINT pk_workers PRIMARY KEY (host)
        )""",
    ):
        conn.exec_driver_sql(sql)


def _v2_to_v3(conn: Connection) -> None:
    """Slot preference: the slot (or GPU) a queued run asks for."""
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN want_slot TEXT")


def _v3_to_v4(conn: Connection) -> None:
    """Sweeps: the sweeps and their cells, and each run's config hash (filled in for every
    existing run, so a sweep can reuse runs recorded before it)."""
    from mfm.store.hashing import config_hash

    for sql in (
        "ALTER TABLE runs ADD COLUMN config_hash TEXT",
        "CREATE INDEX ix_runs_config_hash ON runs (config_hash)",
        """CREATE TABLE sweeps (
            id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            file_text TEXT NOT NULL,
            grid_json TEXT NOT NULL,
            code_version TEXT,
            CONSTRAINT uq_sweeps_name UNIQUE (name)
        )""",
        """CREATE TABLE sweep_cells (
            sweep_id INTEGER NOT NULL,
            config_hash TEXT NOT NULL,
            idx INTEGER NOT NULL,
            arm TEXT NOT NULL,
            seed INTEGER NOT NULL,
            run_id INTEGER,
            CONSTRAINT pk_sweep_cells PRIMARY KEY (sweep_id, config_hash),
            CONSTRAINT fk_sweep_cells_sweep_id_sweeps FOREIGN KEY (sweep_id)
                REFERENCES sweeps (id) ON DELETE CASCADE,
            CONSTRAINT fk_sweep_cells_run_id_runs FOREIGN KEY (run_id)
                REFERENCES runs (id) ON DELETE SET NULL
        )""",
        "CREATE INDEX ix_sweep_cells_run_id ON sweep_cells (run_id)",
    ):
        conn.exec_driver_sql(sql)
    rows = conn.exec_driver_sql("SELECT id, config_json FROM runs").fetchall()
    for run_id, text_ in rows:
        try:
            digest = config_hash(text_)
        except ValueError:
            continue  # an unreadable config matches nothing
        conn.execute(text("UPDATE runs SET config_hash = :h WHERE id = :i"),
                     {"h": digest, "i": run_id})


MIGRATIONS: list[Callable[[Connection], None]] = [_v0_to_v1, _v1_to_v2, _v2_to_v3, _v3_to_v4]
assert len(MIGRATIONS) == LEGACY_VERSION, "one migration per hand-written schema version"


def user_tables(conn: Connection) -> list[str]:
    """Tables in the database (its default schema on PostgreSQL), leaving out SQLite's own
    (sqlite_*)."""
    return [t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")]


class SchemaVersionError(ValueError):
    """``schema_info`` exists but holds no usable version: the file is damaged or was not
    written by mfm. The message says what was found (the caller names the file)."""


def read_version(conn: Connection) -> int | None:
    """The stored schema version; None for a database without ``schema_info``.

    Raises ``SchemaVersionError`` when the table is there without a version row, or the
    version is not a whole number >= 1 (text, a fraction, NULL): migrating from a guess could
    damage the records.
    """
    if not inspect(conn).has_table("schema_info"):
        return None
    row = conn.execute(text("SELECT version FROM schema_info WHERE id = 1")).first()
    if row is None:
        raise SchemaVersionError("its schema_info table has no version row")
    version = row[0]
    # SQLite hands back an int for a whole number in an INTEGER column; anything else (text,
    # a REAL such as 1.5, NULL) was not written by mfm.
    if type(version) is not int or version < 1:
        raise SchemaVersionError(f"its schema version is {visible(repr(version), 40)}, "
                                 "not a whole number >= 1")
    return version


def write_version(conn: Connection, version: int) -> None:
    updated = conn.execute(text("UPDATE schema_info SET version = :v WHERE id = 1"),
                           {"v": version}).rowcount
    if not updated:
        conn.execute(text("INSERT INTO schema_info (id, version) VALUES (1, :v)"),
                     {"v": version})


def migrate(conn: Connection, from_version: int, to_version: int | None = None) -> None:
    """Apply ``MIGRATIONS[from_version:to_version]`` (to ``LEGACY_VERSION`` by default) in
    order and record the new version."""
    if to_version is None:
        to_version = LEGACY_VERSION
    if not 0 <= from_version <= to_version <= len(MIGRATIONS):
        raise ValueError(f"cannot migrate from version {from_version} to {to_version}")
    for step in MIGRATIONS[from_version:to_version]:
        step(conn)
    if to_version > 0:
        write_version(conn, to_version)
