"""Faults of the database file: each comes out as one ``StoreError`` line that names the file
and says what to do, and the file is left byte for byte as it was. Real SQLite files under
tmp_path, never :memory:."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mfm.cli.context import App, busy_timeout_ms
from mfm.cli.errors import UserError, cli_message
from mfm.cli.main import cli
from mfm.store import Database, StoreError, repo
from mfm.store.db import BUSY_TIMEOUT_MS

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
BIG = 99999999999999999999  # beyond SQLite's 64-bit integers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def real_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real mfm database, closed (so the main file holds everything): 40 runs with metrics;
    no value spills onto overflow pages, so damage shows as damage, not as odd JSON."""
    path = tmp_path_factory.mktemp("real") / "experiments.db"
    with Database(str(path)) as db:
        for i in range(40):
            run_id = repo.create_run(db, config={"pad": "x" * 400}, epochs_total=2,
                                     name=f"run{i}")
            repo.log_step_metrics(db, run_id, [("loss", s, 0, 0.5) for s in range(30)])
            repo.log_epoch(db, run_id, 0, {"acc": 0.5}, [0.1, 0.9])
    assert not Path(f"{path}-wal").exists()
    return path.read_bytes()


@pytest.fixture
def real_db(tmp_path: Path, real_bytes: bytes) -> Path:
    path = tmp_path / "experiments.db"
    path.write_bytes(real_bytes)
    return path


def read_everything(db: Database) -> None:
    for run in repo.list_runs(db):
        repo.get_step_series(db, run.id, "loss")
        repo.get_epoch_series(db, run.id)
        repo.get_all_class_accuracy(db, run.id)


def refused(path: Path, *parts: str, target: str | None = None) -> str:
    """Opening and reading ``path`` raises one StoreError line naming it (and ``parts``);
    the file's bytes are unchanged."""
    before = sha256(path)
    with pytest.raises(StoreError) as info:
        with Database(target or str(path)) as db:
            read_everything(db)
    assert info.value.field == "db"  # about the database: the command line says "--db: "
    message = cli_message(info.value)
    assert message == f"--db: {info.value}"
    assert "\n" not in message and f"'{path}'" in message, message
    for part in parts:
        assert part in message, message
    assert sha256(path) == before
    return message


def edit(path: Path, *statements: str) -> None:
    con = sqlite3.connect(path, isolation_level=None)
    try:
        for sql in statements:
            con.execute(sql)
    finally:
        con.close()
    assert not Path(f"{path}-wal").exists()


# -- a, b: not a database, damaged ----------------------------------------------------------

@pytest.mark.parametrize("tail", [b"", b"\x00" * 84, bytes(range(256)) * 40],
                         ids=["header-only", "short-header", "garbage"])
def test_sqlite_header_followed_by_garbage(tmp_path, tail):
    path = tmp_path / "experiments.db"
    path.write_bytes(b"SQLite format 3\x00" + tail)
    refused(path, "is damaged", "restore it from a backup or point --db at another file")


def test_sqlite_header_and_garbage_as_url(tmp_path):
    path = tmp_path / "experiments.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    refused(path, "is damaged (file is not a database)", target=f"sqlite:///{path}")


@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_truncated_database(real_db, real_bytes, fraction):
    real_db.write_bytes(real_bytes[:int(len(real_bytes) * fraction)])
    refused(real_db, "is damaged (database disk image is malformed)",
            "restore it from a backup")


def test_pages_overwritten_in_the_middle(real_db, real_bytes):
    con = sqlite3.connect(real_db)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    runs_root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    con.close()
    data = bytearray(real_bytes)
    pages = len(data) // page_size
    garbage = (bytes(range(256)) * (page_size // 256 + 1))[:page_size]
    for page in {runs_root, pages // 2, pages // 2 + 1}:  # 1-based page numbers
        data[(page - 1) * page_size:page * page_size] = garbage
    real_db.write_bytes(bytes(data))
    refused(real_db, "is damaged", "malformed", "restore it from a backup")


def test_damage_found_after_opening_is_one_line_too(real_db, real_bytes):
    """Open first, then the file is damaged under a reader (as a disk fault would do)."""
    with Database(str(real_db)) as db:
        db.engine.dispose()
        con = sqlite3.connect(real_db)
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
        con.close()
        with real_db.open("r+b") as f:
            f.seek((root - 1) * page_size)
            f.write(b"\xff" * page_size)
        before = sha256(real_db)
        with pytest.raises(StoreError) as info:
            repo.list_runs(db)
    assert str(info.value).startswith(f"'{real_db}' is damaged")  # neutral: no CLI prefix
    message = cli_message(info.value)
    assert message == (f"--db: '{real_db}' is damaged (database disk image is malformed); "
                       "restore it from a backup or point --db at another file")
    assert sha256(real_db) == before


def rollback_journal(path: Path) -> None:
    edit(path, "PRAGMA journal_mode=DELETE")
    assert path.read_bytes()[18:20] == b"\x01\x01"


def test_damaged_rollback_journal_database_is_not_switched_to_wal(real_db):
    """Switching to WAL rewrites the header: a damaged file is refused before that."""
    rollback_journal(real_db)
    con = sqlite3.connect(real_db)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    with real_db.open("r+b") as f:  # pages no open reads, only a check of the file, visits
        f.seek((pages // 2) * page_size)
        f.write(b"\xff" * page_size)
    # found by quick_check or by the first read, depending on which page the damage hit:
    # either way refused before the switch to WAL could rewrite the header (refused()
    # compares the bytes)
    message = refused(real_db, "is damaged (", "restore it from a backup")
    assert len(message) < 300


def test_foreign_rollback_journal_database_is_left_as_it_is(db_path):
    edit(db_path, "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    assert db_path.read_bytes()[18:20] == b"\x01\x01"
    before = sha256(db_path)
    with pytest.raises(StoreError, match="holds tables that are not mfm records"):
        Database(str(db_path))
    assert sha256(db_path) == before


def test_read_only_rollback_journal_database_can_be_read(real_db):
    rollback_journal(real_db)
    before = sha256(real_db)
    with not_writable(real_db):
        with Database(str(real_db)) as db:
            assert len(repo.list_runs(db)) == 40
            with pytest.raises(StoreError, match="is read-only"):
                repo.create_run(db, config={}, epochs_total=1)
    assert sha256(real_db) == before


def test_damaged_file_through_the_cli_is_one_error_line(tmp_path, cli_env):
    path = tmp_path / "experiments.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    before = sha256(path)
    res = CliRunner().invoke(cli, ["runs", "--db", str(path)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [f"error: --db: '{path}' is damaged (file is not a database); restore it "
                     "from a backup or point --db at another file"]
    assert sha256(path) == before


# -- c: schema version -----------------------------------------------------------------------

@pytest.mark.parametrize("value, shown", [("'abc'", "'abc'"), ("1.5", "1.5"), ("0", "0"),
                                          ("-2", "-2")])
def test_schema_version_that_is_not_a_whole_number(real_db, value, shown):
    edit(real_db, f"UPDATE schema_info SET version = {value}")
    refused(real_db, f"is damaged or not mfm records (its schema version is {shown}, not a "
                     "whole number >= 1)", "restore it from a backup")


def test_schema_version_null(real_db):
    # mfm's schema forbids NULL; a table made by something else need not.
    edit(real_db, "CREATE TABLE si (id INTEGER PRIMARY KEY, version INTEGER)",
         "INSERT INTO si SELECT id, NULL FROM schema_info", "DROP TABLE schema_info",
         "ALTER TABLE si RENAME TO schema_info")
    refused(real_db, "(its schema version is None, not a whole number >= 1)")


def test_schema_info_without_its_row(real_db):
    edit(real_db, "DELETE FROM schema_info")
    refused(real_db, "is damaged or not mfm records (its schema_info table has no version row)")


def test_schema_version_text_is_cut_short(real_db):
    edit(real_db, f"UPDATE schema_info SET version = '{'v' * 5000}'")
    message = refused(real_db, "its schema version is 'vvv")
    assert len(message) < 400


# -- d: read-only -----------------------------------------------------------------------------

@contextlib.contextmanager
def read_only_mount(folder: Path, files: dict[str, bytes]) -> Iterator[Path]:
    """A small tmpfs holding ``files``, remounted read-only (root only)."""
    if not IS_ROOT or not shutil.which("mount"):
        pytest.skip("a read-only file system needs root (mount)")
    folder.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        ro = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True,
                            text=True)
        if ro.returncode:
            pytest.skip(f"cannot remount the tmpfs read-only: {ro.stderr.strip()}")
        yield folder
    finally:
        gc.collect()  # a Database the CLI left open holds the file: close it
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def not_writable(path: Path) -> Iterator[None]:
    """``path`` (a file or folder) made unwritable: chattr +i as root (root passes chmod),
    chmod a-w otherwise."""
    if IS_ROOT:
        if not shutil.which("chattr"):
            pytest.skip("root passes chmod, and chattr is not installed")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)


def test_database_on_a_read_only_file_system_can_be_read(tmp_path, real_bytes):
    with read_only_mount(tmp_path / "ro", {"experiments.db": real_bytes}) as folder:
        path = folder / "experiments.db"
        before = sha256(path)
        with Database(str(path)) as db:
            assert db.read_only_media
            assert len(repo.list_runs(db)) == 40
            read_everything(db)
            with pytest.raises(StoreError) as info:
                repo.create_run(db, config={}, epochs_total=1)
        assert cli_message(info.value) == (
            f"--db: '{path}' is on a read-only file system, so it can only be read (attempt "
            "to write a readonly database); copy it to a writable folder and point --db at "
            "the copy")
        assert sha256(path) == before
        assert sorted(p.name for p in folder.iterdir()) == ["experiments.db"]


def test_read_only_file_system_through_the_cli(tmp_path, real_bytes, cli_env):
    """``mfm runs`` lists the runs of a database on read-only media."""
    with read_only_mount(tmp_path / "ro", {"experiments.db": real_bytes}) as folder:
        path = folder / "experiments.db"
        res = CliRunner().invoke(cli, ["runs", "--db", str(path), "--json"])
        assert res.exit_code == 0, res.output
        assert "run39" in res.output


def test_new_database_on_a_read_only_file_system(tmp_path):
    with read_only_mount(tmp_path / "ro", {}) as folder:
        path = folder / "experiments.db"
        with pytest.raises(StoreError) as info:
            Database(str(path))
        assert cli_message(info.value) == (
            f"--db: cannot create '{path}': its folder is read-only (unable to open database "
            "file); make the folder writable or point --db at another folder")
        assert not path.exists()


def test_read_only_file_in_a_writable_folder_reads_and_refuses_writes(real_db):
    before = sha256(real_db)
    with not_writable(real_db):
        with Database(str(real_db)) as db:
            assert len(repo.list_runs(db)) == 40
            with pytest.raises(StoreError) as info:
                repo.create_run(db, config={}, epochs_total=1)
    assert cli_message(info.value) == (
        f"--db: '{real_db}' is read-only (attempt to write a readonly database); make it "
        "writable (chmod u+w), or copy it and point --db at the copy")
    assert sha256(real_db) == before


def test_writable_file_in_a_read_only_folder_reads_and_refuses_writes(tmp_path, real_bytes):
    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "experiments.db"
    path.write_bytes(real_bytes)
    before = sha256(path)
    with not_writable(folder):
        with Database(str(path)) as db:
            read_everything(db)  # listing works: opened read-only
            with pytest.raises(StoreError) as info:
                repo.create_run(db, config={"a": 1}, epochs_total=1)
    assert cli_message(info.value) == (
        f"--db: the folder of '{path}' is read-only, and SQLite needs to create "
        "experiments.db-wal and experiments.db-shm beside it (attempt to write a readonly "
        "database); make the folder writable, or copy the database to a writable folder and "
        "point --db at the copy")
    assert sha256(path) == before


# -- e: a write lock held for too long -------------------------------------------------------

HOLD_LOCK = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # hold the lock until killed
"""


@contextlib.contextmanager
def write_lock_held(path: Path, deadline_s: float = 30.0) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + deadline_s
        line = ""
        while not line:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                pytest.fail(f"the lock holder did not say 'locked' in time (rc={proc.poll()})")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                line = proc.stdout.readline()
        assert line.strip() == "locked"
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_write_lock_held_longer_than_the_busy_timeout(real_db):
    before = sha256(real_db)
    with write_lock_held(real_db):
        with Database(str(real_db), busy_timeout_ms=200) as db:
            assert len(repo.list_runs(db)) == 40  # WAL: reading goes on
            started = time.monotonic()
            with pytest.raises(StoreError) as info:
                repo.create_run(db, config={}, epochs_total=1)
            waited = time.monotonic() - started
            assert sha256(real_db) == before
    assert 0.15 <= waited < 20
    assert cli_message(info.value) == (
        f"--db: '{real_db}' is busy: another process has held its write lock for longer than "
        f"0.2 s; retry later, or find that process with `fuser {real_db}`")
    assert sha256(real_db) == before
    with Database(str(real_db), busy_timeout_ms=200) as db:  # the lock is gone: writes work
        repo.create_run(db, config={}, epochs_total=1)


def test_busy_timeout_is_set_on_every_connection(db_path):
    with Database(str(db_path), busy_timeout_ms=1234) as db:
        db.engine.dispose()
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    with Database(str(db_path)) as db:
        assert db.busy_timeout_ms == BUSY_TIMEOUT_MS == 30_000


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "200", 2 ** 31])
def test_busy_timeout_must_be_a_positive_integer(db_path, bad):
    with pytest.raises(ValueError, match="busy_timeout_ms must be a positive integer"):
        Database(str(db_path), busy_timeout_ms=bad)
    assert not db_path.exists()


def test_busy_timeout_from_the_environment():
    assert busy_timeout_ms({}) == BUSY_TIMEOUT_MS
    assert busy_timeout_ms({"MFM_BUSY_TIMEOUT_MS": ""}) == BUSY_TIMEOUT_MS
    assert busy_timeout_ms({"MFM_BUSY_TIMEOUT_MS": " 250 "}) == 250
    assert busy_timeout_ms({"MFM_BUSY_TIMEOUT_MS": str(2 ** 31 - 1)}) == 2 ** 31 - 1
    for bad in ("0", "-5", "1.5", "abc", "1e3", "\x1b[31m", str(2 ** 31), "9" * 5000):
        with pytest.raises(UserError) as info:
            busy_timeout_ms({"MFM_BUSY_TIMEOUT_MS": bad})
        message = info.value.format_message()
        assert message.startswith("MFM_BUSY_TIMEOUT_MS: expected a positive whole number of "
                                  "milliseconds (at most 2147483647), got ")
        assert "\n" not in message and "\x1b" not in message and len(message) < 200


def test_app_opens_the_database_with_the_environment_busy_timeout(db_path, monkeypatch):
    monkeypatch.setenv("MFM_BUSY_TIMEOUT_MS", "321")
    db = App(str(db_path)).open_db()
    try:
        assert db.busy_timeout_ms == 321
    finally:
        db.close()
    monkeypatch.setenv("MFM_BUSY_TIMEOUT_MS", "soon")
    with pytest.raises(UserError, match="MFM_BUSY_TIMEOUT_MS"):
        App(str(db_path)).open_db()


def test_busy_database_through_the_cli(real_db, cli_env, monkeypatch):
    monkeypatch.setenv("MFM_BUSY_TIMEOUT_MS", "200")
    before = sha256(real_db)
    with write_lock_held(real_db):
        res = CliRunner().invoke(cli, ["runs", "--db", str(real_db), "--json"])
        assert res.exit_code == 0, res.output  # reading is not held up by a writer
    assert sha256(real_db) == before


# -- f: ids beyond SQLite's integers ---------------------------------------------------------

@pytest.mark.parametrize("run_id", [BIG, -BIG, 2 ** 63])
def test_ids_too_large_for_sqlite_name_nothing(real_db, run_id):
    before = sha256(real_db)
    with Database(str(real_db)) as db:
        assert repo.get_run(db, run_id) is None
        assert repo.get_step_series(db, run_id, "loss") == []
        assert repo.get_epoch_series(db, run_id) == {}
        assert repo.get_class_accuracy(db, run_id) is None
        assert repo.get_all_class_accuracy(db, run_id) == {}
        assert repo.latest_metrics(db, run_id) == {}
        assert repo.metric_keys(db, run_id) == []
        for write in (lambda: repo.update_run(db, run_id, status="running"),
                      lambda: repo.update_run(db, run_id),
                      lambda: repo.delete_run(db, run_id),
                      lambda: repo.log_step_metrics(db, run_id, [("loss", 0, 0, 1.0)]),
                      lambda: repo.log_epoch(db, run_id, 0, {"acc": 1.0}, None)):
            with pytest.raises(StoreError, match=f"^no run {run_id}$"):
                write()
        with pytest.raises(StoreError, match="no dataset spec"):
            repo.create_run(db, config={}, epochs_total=1, dataset_spec_id=run_id)
        with pytest.raises(StoreError, match="no config"):
            repo.create_run(db, config={}, epochs_total=1, config_id=run_id)
        assert repo.get_config(db, "c", version=run_id) is None
        assert len(repo.list_runs(db)) == 40
    assert sha256(real_db) == before


def test_other_integers_beyond_sqlite(real_db):
    with Database(str(real_db)) as db:
        run = repo.list_runs(db, limit=1)[0]
        assert repo.get_class_accuracy(db, run.id, epoch=BIG) is None
        assert repo.get_step_series(db, run.id, "loss", after_step=BIG) == []
        assert len(repo.get_step_series(db, run.id, "loss", after_step=-BIG)) == 30
        assert repo.get_epoch_series(db, run.id, after_epoch=BIG) == {}
        assert repo.get_epoch_series(db, run.id, after_epoch=-BIG) == {"acc": [(0, 0.5)]}
        with pytest.raises(ValueError, match="step .* is out of range"):
            repo.log_step_metrics(db, run.id, [("loss", BIG, 0, 1.0)])
        with pytest.raises(ValueError, match="epoch .* is out of range"):
            repo.log_epoch(db, run.id, BIG, {"acc": 1.0}, None)
        with pytest.raises(ValueError, match="epochs_total .* is out of range"):
            repo.create_run(db, config={}, epochs_total=BIG)
        assert len(repo.get_step_series(db, run.id, "loss")) == 30


@pytest.mark.parametrize("limit", [10 ** 20, 2 ** 63, 2 ** 63 - 1])
def test_list_runs_limit_beyond_sqlite_means_no_limit(real_db, limit):
    with Database(str(real_db)) as db:
        assert len(repo.list_runs(db, limit=limit)) == 40
        assert len(repo.list_runs(db, limit=limit, confusion=False)) == 40


# -- g: names ---------------------------------------------------------------------------------

BAD_NAMES = ["\x1b[31mred", "a\nb", "x" * 201, "bidi\u202eoverride"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["escape", "newline", "long", "bidi"])
def test_bad_names_are_refused_before_anything_is_written(real_db, name):
    before = sha256(real_db)
    with Database(str(real_db)) as db:
        for write in (lambda: repo.create_run(db, config={}, epochs_total=1, name=name),
                      lambda: repo.save_dataset_spec(db, name, {}),
                      lambda: repo.save_config(db, name, {}),
                      lambda: repo.update_run(db, 1, name=name)):
            with pytest.raises(ValueError, match="^name: "):
                write()
        assert len(repo.list_runs(db)) == 40
        assert repo.list_dataset_specs(db) == [] and repo.list_configs(db) == []
        assert repo.get_run(db, 1).name == "run0"
    assert sha256(real_db) == before


def test_good_names_still_work(db_path):
    with Database(str(db_path)) as db:
        run_id = repo.create_run(db, config={}, epochs_total=1, name="ok ünïcode 名前")
        repo.update_run(db, run_id, name="x" * 200)
        repo.update_run(db, run_id, name=None)
        assert repo.save_dataset_spec(db, "spec-1", {}) > 0
        assert repo.save_config(db, "cfg 1", {}).version == 1
