"""Run lineage in the records (``runs.parent_id``, revision 0004), on SQLite and PostgreSQL:
the migration from 0003 keeps every row and adds the column, recording and queueing a run set
its parent from ``train.init_from``, ``children`` lists a run's children, and the queue holds
a child back until its parent completes, saying what it waits for."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from mfm.store import Database, admin, migrate, queue, repo
from mfm.store.records import WAIT_PREFIX, RunLink, parent_of, wait_note


@pytest.fixture
def db(db_url):
    with Database(db_url) as database:
        yield database


def _child_config(parent: int | str) -> dict:
    return {"method": {"name": "ce"}, "train": {"init_from": str(parent),
                                                 "init_checkpoint": "last"}}


def _finish(db, run_id: int, status: str = "completed") -> None:
    queue.transition(db, run_id, "starting", allowed_from=("queued",))
    queue.transition(db, run_id, "running", allowed_from=("starting",))
    queue.transition(db, run_id, status)


# -- the migration -------------------------------------------------------------------------------

def _at_0003(url: str) -> list[tuple]:
    """A database built by the real revisions up to 0003 (what mfm left before lineage), with
    two runs, a metric and a sweep cell; returns its runs' rows."""
    db = Database(url, upgrade=False)
    try:
        with db.engine.begin() as conn:
            migrate._alembic_upgrade(conn, "0003")
            for i in (1, 2):
                conn.execute(text(
                    "INSERT INTO runs (status, created_at, config_json, epochs_total, job_id) "
                    f"VALUES ('completed', {i}.0, '{{\"train\": {{\"init_from\": \"{i - 1}\"}}}}',"
                    f" 3, 'j{i}')"))
            conn.execute(text("INSERT INTO epoch_metrics (run_id, key, epoch, value, at) "
                              "VALUES (1, 'acc', 0, 0.5, 1.0)"))
            rows = [tuple(r) for r in conn.execute(text("SELECT * FROM runs ORDER BY id"))]
    finally:
        db.close()
    return rows


def test_upgrade_from_0003_keeps_every_row_and_adds_parent_id(db_url):
    before = _at_0003(db_url)
    with Database(db_url, upgrade=False) as db:
        done = admin.upgrade(db)  # what `mfm db upgrade` does (a SQLite file on open too)
        assert done.as_pair() == ("0003", "0004") and migrate.HEAD_REVISION == "0004"
    with Database(db_url) as db:
        engine = create_engine(db.engine.url)
    try:
        with engine.connect() as conn:
            columns = [c["name"] for c in inspect(conn).get_columns("runs")]
            indexes = {i["name"]: i["column_names"] for i in inspect(conn).get_indexes("runs")}
            after = [tuple(r) for r in conn.execute(text("SELECT * FROM runs ORDER BY id"))]
            metric = conn.execute(text("SELECT value FROM epoch_metrics")).scalar_one()
    finally:
        engine.dispose()
    assert columns[-1] == "parent_id" and indexes["ix_runs_parent_id"] == ["parent_id"]
    # every old value where it was; the new column comes last, empty (no backfill: a run
    # recorded before lineage existed says nothing of its parent)
    assert [r[:-1] for r in after] == before and [r[-1] for r in after] == [None, None]
    assert metric == 0.5
    with Database(db_url) as db:
        assert [r.parent_id for r in repo.list_runs(db)] == [None, None]
        child = queue.enqueue_run(db, config=_child_config(1), epochs_total=1)
        assert repo.get_run(db, child).parent_id == 1


# -- recording and reading -----------------------------------------------------------------------

def test_recording_or_queueing_sets_the_parent_from_init_from(db):
    parent = repo.create_run(db, config={"method": {"name": "ce"}}, epochs_total=1, name="p")
    queued = queue.enqueue_run(db, config=_child_config(parent), epochs_total=1, name="q")
    here = repo.create_run(db, config=_child_config(parent), epochs_total=1)
    other = queue.enqueue_run(db, config={"train": {"init_from": ""}}, epochs_total=1)
    assert [repo.get_run(db, i).parent_id for i in (parent, queued, here, other)] == [
        None, parent, parent, None]
    assert repo.children(db, parent) == [RunLink(queued, "q", "queued"),
                                         RunLink(here, None, "created")]
    assert repo.children(db, queued) == [] and repo.children(db, 2**70) == []
    assert repo.run_link(db, parent) == RunLink(parent, "p", "created")
    assert repo.run_link(db, 999) is None


@pytest.mark.parametrize(("config", "parent"), [
    ({"train": {"init_from": "12"}}, 12), ({"train": {"init_from": ""}}, None),
    ({"train": {"init_from": "arm:stage1"}}, None), ({"train": {}}, None), ({}, None),
    ({"train": "x"}, None), ({"train": {"init_from": "\u00b2"}}, None),
])
def test_parent_of_reads_only_a_run_id(config, parent):
    assert parent_of(config) == parent


# -- the queue waits for a parent ----------------------------------------------------------------

def test_a_child_is_claimed_only_once_its_parent_completed(db):
    parent = queue.enqueue_run(db, config={"method": {"name": "ce"}}, epochs_total=1)
    child = queue.enqueue_run(db, config=_child_config(parent), epochs_total=1)
    other = queue.enqueue_run(db, config={"i": 3}, epochs_total=1)
    assert queue.claim_next(db, host="h", slot="cpu0").id == parent
    # the parent is starting: the child is passed over, the run behind it is not
    assert queue.claim_next(db, host="h", slot="cpu1").id == other
    assert queue.claim_next(db, host="h", slot="cpu2") is None
    rec = repo.get_run(db, child)
    assert rec.status == "queued"
    assert rec.error == f"{WAIT_PREFIX}run {parent} (starting) to complete"
    assert wait_note(rec, 1) == f"#1 in queue; waits for run {parent} (starting) to complete"
    queue.transition(db, parent, "running", allowed_from=("starting",))
    assert queue.claim_next(db, host="h", slot="cpu2") is None
    assert repo.get_run(db, child).error == f"{WAIT_PREFIX}run {parent} (running) to complete"
    queue.transition(db, parent, "completed")
    got = queue.claim_next(db, host="h", slot="cpu2")
    assert got.id == child and got.status == "starting" and got.error is None


def test_a_child_of_a_parent_that_ended_waits_for_its_resume(db):
    """A failed, cancelled or lost parent leaves its child queued, saying so; resuming the
    parent (which then completes) is all it takes for the child to run."""
    parent = queue.enqueue_run(db, config={"method": {"name": "ce"}}, epochs_total=1)
    child = queue.enqueue_run(db, config=_child_config(parent), epochs_total=1)
    assert queue.claim_next(db, host="h", slot="cpu0").id == parent
    queue.transition(db, parent, "running", allowed_from=("starting",))
    queue.transition(db, parent, "failed", error="boom")
    assert queue.claim_next(db, host="h", slot="cpu0") is None
    rec = repo.get_run(db, child)
    assert rec.status == "queued" and rec.error == (
        f"{WAIT_PREFIX}run {parent} (failed): it starts once run {parent} is resumed and "
        f"completes (mfm resume {parent}), or cancel it")
    queue.request_resume(db, parent)
    assert queue.claim_next(db, host="h", slot="cpu0").id == parent  # the parent first
    assert repo.get_run(db, child).error.startswith(f"{WAIT_PREFIX}run {parent} (starting)")
    queue.transition(db, parent, "running", allowed_from=("starting",))
    queue.transition(db, parent, "completed")
    assert queue.claim_next(db, host="h", slot="cpu0").id == child


def test_a_cancelled_child_stays_cancelled_and_a_deleted_parent_holds_nothing_back(db):
    parent = queue.enqueue_run(db, config={"method": {"name": "ce"}}, epochs_total=1)
    child = queue.enqueue_run(db, config=_child_config(parent), epochs_total=1)
    gone = queue.enqueue_run(db, config=_child_config(parent), epochs_total=1)
    queue.request_cancel(db, child)
    assert queue.claim_next(db, host="h", slot="cpu0").id == parent
    assert queue.claim_next(db, host="h", slot="cpu0") is None
    queue.transition(db, parent, "cancelled", allowed_from=("starting",))
    repo.delete_run(db, parent)
    # the run process refuses it when it starts (no parent to resolve), recording why
    got = queue.claim_next(db, host="h", slot="cpu0")
    assert got.id == gone and got.parent_id == parent and got.error is None
    assert repo.get_run(db, child).status == "cancelled"
