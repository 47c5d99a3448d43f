"""The store's errors: neutral one-line messages with a field, typed kinds a front end can
tell apart, and the command line's wording of them (mfm.cli.errors.cli_message)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from mfm.cli.errors import cli_message
from mfm.store import Database, queue, repo
from mfm.store.errors import (
    NewerSchema,
    NoSuchRun,
    OlderSchema,
    QueueError,
    RunStateError,
    StoreError,
)


def test_message_is_one_line_without_a_prefix_and_the_cli_adds_it():
    e = StoreError("'x.db' is busy\n  retry later", field="db")
    assert (str(e), e.message, e.field) == ("'x.db' is busy retry later",) * 2 + ("db",)
    assert cli_message(e) == "--db: 'x.db' is busy retry later"
    assert cli_message(StoreError("no config named 'a'")) == "no config named 'a'"
    assert cli_message(QueueError("run 3 is queued", field="run")) == "ID: run 3 is queued"
    assert cli_message(ValueError("plain")) == "plain"


def test_no_such_run_is_both_a_store_and_a_queue_error():
    e = NoSuchRun(42)
    assert isinstance(e, StoreError) and isinstance(e, QueueError) and isinstance(e, ValueError)
    assert (str(e), e.field, e.run_id) == ("no run 42", "run", 42)
    assert cli_message(e) == "ID: no run 42"


@pytest.mark.parametrize("error", [
    StoreError("busy", field="db"),
    NoSuchRun(7),
    RunStateError(7, "completed", "run 7 is already completed; nothing to cancel"),
    NewerSchema("newer", found="0009", needed="0003", mfm_version="0.1.0"),
    OlderSchema("older", found="0002", needed="0003", mfm_version="0.1.0", found_mfm="0.1.0",
                needed_mfm="0.1.0"),
])
def test_errors_survive_pickling_with_their_fields(error):
    """They cross process boundaries (multiprocessing) whole."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error) and vars(back) == vars(error) and str(back) == str(error)


def test_queue_and_repository_refusals_are_typed(db_url):
    with Database(db_url) as db:
        done = repo.create_run(db, config={}, epochs_total=1, status="completed")
        with pytest.raises(NoSuchRun) as missing:
            queue.request_cancel(db, 42)
        assert cli_message(missing.value) == "ID: no run 42"
        with pytest.raises(RunStateError) as state:
            queue.request_cancel(db, done)
        assert (state.value.run_id, state.value.status) == (done, "completed")
        assert cli_message(state.value) == (
            f"ID: run {done} is already completed; nothing to cancel")
        with pytest.raises(RunStateError, match="it finished; nothing to resume"):
            queue.request_resume(db, done)
        with pytest.raises(StoreError) as gone:  # the repository's callers catch StoreError
            repo.update_run(db, 10 ** 30, error="x")
        assert isinstance(gone.value, NoSuchRun) and gone.value.run_id == 10 ** 30


def test_errors_are_the_same_classes_wherever_they_are_imported_from():
    import mfm.store
    import mfm.store.db
    from mfm.store import errors

    assert mfm.store.StoreError is mfm.store.db.StoreError is errors.StoreError
    assert mfm.store.queue.QueueError is errors.QueueError
    assert mfm.store.NoSuchRun is queue.NoSuchRun is errors.NoSuchRun


def _fresh(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, timeout=120).stdout.strip()


def test_migrate_does_not_import_the_database_and_errors_import_no_sqlalchemy():
    """migrate works on connections (admin joins it to Database); the errors load with the
    light modules, before any database is opened."""
    assert _fresh("import sys, mfm.store.migrate; print('mfm.store.db' in sys.modules)") \
        == "False"
    assert _fresh("import sys; from mfm.store import StoreError; "
                  "print('sqlalchemy' in sys.modules)") == "False"
