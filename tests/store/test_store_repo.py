"""Repository round trips against a real SQLite file and a real PostgreSQL database (the
``db_url`` fixture runs each test on both; PostgreSQL ones skip without a server)."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import pytest
from sqlalchemy import event, text

from mfm.store import (
    STATUSES,
    ConfigRecord,
    Database,
    DatasetSpecRecord,
    MetricPoint,
    RunRecord,
    StoreError,
    repo,
)

CONFIG = {"method": {"name": "mfm"}, "data": {"name": "cifar10", "imbalance_factor": 100},
          "train": {"epochs": 3}}


@pytest.fixture
def db(db_url):
    with Database(db_url) as database:
        yield database


@pytest.fixture
def run_id(db):
    return repo.create_run(db, config=CONFIG, epochs_total=3, name="first")


@contextlib.contextmanager
def selects_on(db):
    """Collect the SELECT statements the engine sends while the block runs."""
    selects: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield selects
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def _rows(db, sql, **params):
    """Rows as the database holds them, read past the repository."""
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def _count(db, table, run_id):
    return _rows(db, f"SELECT count(*) FROM {table} WHERE run_id = :r", r=run_id)[0][0]


# -- runs -----------------------------------------------------------------------------------

def test_create_and_get_run(db, run_id):
    rec = repo.get_run(db, run_id)
    assert isinstance(rec, RunRecord)
    assert (rec.id, rec.name, rec.status, rec.config, rec.epochs_total) == (
        run_id, "first", "created", CONFIG, 3)
    assert rec.created_at > 0 and rec.started_at is None and rec.epoch is None
    assert rec.latest == {} and rec.summary is None
    assert rec.method == "mfm" and rec.dataset == "cifar10"
    assert repo.get_run(db, run_id + 100) is None


def test_run_record_is_frozen_and_plain(db, run_id):
    rec = repo.get_run(db, run_id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.status = "running"  # type: ignore[misc]
    assert dataclasses.asdict(rec)["config"] == CONFIG


def test_method_and_dataset_fall_back_to_question_mark(db):
    rec = repo.get_run(db, repo.create_run(db, config={}, epochs_total=1))
    assert (rec.method, rec.dataset) == ("?", "?")


def test_create_run_rejects_unknown_status(db):
    with pytest.raises(ValueError, match="bogus"):
        repo.create_run(db, config={}, epochs_total=1, status="bogus")
    assert repo.list_runs(db) == []


def test_update_run_round_trips_every_updatable_field(db, run_id):
    fields = dict(status="starting", started_at=1.5, finished_at=2.5, host="box", pid=42,
                  device="cuda:0", split_hash="abc", error="trace", summary={"best": {"acc": 0.9}},
                  class_counts={"train": [5, 1], "classes": ["a", "b"]},
                  confusion=[[1, 0], [0, 1]], checkpoint_dir="/ck", log_path="/log", epoch=2,
                  heartbeat_at=3.5, name="renamed", queued_at=0.5, slot="gpu1",
                  proc_start="boot:123", cancel_requested_at=4.5, resume_requested=True,
                  attempt=2, code_version="0.1.0+abc", want_slot="gpu0", job_id="4242",
                  job_state="PENDING (Priority)")
    assert set(fields) == set(repo.UPDATABLE_RUN_FIELDS)
    repo.update_run(db, run_id, **fields)
    rec = dataclasses.asdict(repo.get_run(db, run_id))
    assert {k: rec[k] for k in fields} == fields


def test_update_run_rejects_unknown_fields_runs_and_statuses(db, run_id):
    with pytest.raises(ValueError, match="config"):
        repo.update_run(db, run_id, config={})
    with pytest.raises(ValueError, match="nope"):
        repo.update_run(db, run_id, status="nope")
    with pytest.raises(StoreError, match="no run 999"):
        repo.update_run(db, 999, host="x")
    with pytest.raises(StoreError, match="no run 999"):
        repo.update_run(db, 999)
    assert repo.get_run(db, run_id).status == "created"


def test_list_runs_newest_first_with_filter_limit_and_latest(db):
    ids = [repo.create_run(db, config=CONFIG, epochs_total=1) for _ in range(5)]
    for i, rid in enumerate(ids):
        repo.log_epoch(db, rid, 0, {"acc": i / 10}, None)
    repo.update_run(db, ids[1], status="completed")
    repo.update_run(db, ids[3], status="completed")
    runs = repo.list_runs(db)
    assert [r.id for r in runs] == ids[::-1]
    assert [r.latest for r in runs] == [{"acc": i / 10} for i in range(5)][::-1]
    assert [r.id for r in repo.list_runs(db, status="completed")] == [ids[3], ids[1]]
    assert [r.id for r in repo.list_runs(db, limit=2)] == [ids[4], ids[3]]
    assert [r.id for r in repo.list_runs(db, status="completed", limit=1)] == [ids[3]]
    assert repo.list_runs(db, status="queued") == []
    with pytest.raises(ValueError, match="unknown status"):
        repo.list_runs(db, status="done")


def test_list_runs_uses_three_queries_whatever_the_count(db):
    """Runs, their latest metrics, their tags: three SELECTs for 6 runs as for 6,000."""
    for i in range(6):
        rid = repo.create_run(db, config={}, epochs_total=1)
        repo.log_step_metrics(db, rid, [("loss", 0, 0, 1.0), ("lr", 0, 0, 0.1)])
        repo.set_tags(db, rid, add=[f"t{i % 2}"])
    with selects_on(db) as selects:
        runs = repo.list_runs(db)
    assert len(runs) == 6 and all(r.latest == {"loss": 1.0, "lr": 0.1} for r in runs)
    assert sorted(r.tags for r in runs) == [("t0",)] * 3 + [("t1",)] * 3
    assert len(selects) == 3


def test_list_runs_can_leave_the_confusion_matrices_unread(db):
    """A table of runs never shows them; confusion=False neither selects the column nor goes
    back for it row by row (still three queries)."""
    for _ in range(3):
        rid = repo.create_run(db, config={}, epochs_total=1)
        repo.update_run(db, rid, confusion=[[3, 1], [0, 4]], summary={"final": {"acc": 0.875}})
    with selects_on(db) as selects:
        light = repo.list_runs(db, confusion=False)
    assert len(light) == 3 and all(r.confusion is None for r in light)
    assert all(r.summary == {"final": {"acc": 0.875}} for r in light)
    assert len(selects) == 3 and "confusion_json" not in selects[0]
    assert all(r.confusion == [[3, 1], [0, 4]] for r in repo.list_runs(db))


def test_status_groups_partition_the_statuses():
    """Every status is in exactly one of waiting / active / terminal, the groups the CLI, the
    TUI and the queue import (one home): a new status must be placed in one of them."""
    from mfm.store.records import ACTIVE, LIVE, RESUMABLE, TERMINAL_STATUSES, WAITING

    groups = [WAITING, ACTIVE, TERMINAL_STATUSES]
    assert sorted(s for g in groups for s in g) == sorted(STATUSES)
    assert len(set(STATUSES)) == len(STATUSES)
    assert set(LIVE) == set(WAITING) | set(ACTIVE)
    assert set(RESUMABLE) <= set(TERMINAL_STATUSES) and "completed" not in RESUMABLE


def test_delete_run_cascades_and_keeps_other_runs(db, run_id):
    other = repo.create_run(db, config={}, epochs_total=1)
    for rid in (run_id, other):
        repo.log_step_metrics(db, rid, [("loss", s, 0, 1.0) for s in range(3)])
        repo.log_epoch(db, rid, 0, {"acc": 0.5}, [0.5, 0.5])
    repo.delete_run(db, run_id)
    assert repo.get_run(db, run_id) is None
    for table in ("step_metrics", "epoch_metrics", "class_metrics", "latest_metrics"):
        assert _count(db, table, run_id) == 0
        assert _count(db, table, other) > 0
    with pytest.raises(StoreError, match=f"no run {run_id}"):
        repo.delete_run(db, run_id)


def test_run_ids_are_not_reused_after_delete(db):
    first = repo.create_run(db, config={}, epochs_total=1)
    repo.delete_run(db, first)
    assert repo.create_run(db, config={}, epochs_total=1) == first + 1


# -- metrics --------------------------------------------------------------------------------

def test_step_series_round_trip_and_after_step(db, run_id):
    repo.log_step_metrics(db, run_id, [("loss", s, s // 4, 1.0 / (s + 1)) for s in range(10)])
    repo.log_step_metrics(db, run_id, [("lr", 0, 0, 0.1)])
    series = repo.get_step_series(db, run_id, "loss")
    assert series == [MetricPoint(s, s // 4, 1.0 / (s + 1)) for s in range(10)]
    assert [p.step for p in repo.get_step_series(db, run_id, "loss", after_step=6)] == [7, 8, 9]
    assert repo.get_step_series(db, run_id, "loss", after_step=9) == []
    assert repo.get_step_series(db, run_id, "missing") == []
    assert repo.metric_keys(db, run_id) == ["loss", "lr"]


def test_relogging_a_step_replaces_it(db, run_id):
    repo.log_step_metrics(db, run_id, [("loss", 0, 0, 1.0), ("loss", 1, 0, 0.9)])
    repo.log_step_metrics(db, run_id, [("loss", 1, 0, 0.8), ("loss", 2, 0, 0.7)])  # resumed
    assert [(p.step, p.value) for p in repo.get_step_series(db, run_id, "loss")] == [
        (0, 1.0), (1, 0.8), (2, 0.7)]


def test_log_step_metrics_for_unknown_run_writes_nothing(db):
    with pytest.raises(StoreError, match="no run 77"):
        repo.log_step_metrics(db, 77, [("loss", 0, 0, 1.0)])
    assert _count(db, "step_metrics", 77) == 0
    repo.log_step_metrics(db, 77, [])  # nothing to write is not an error


def test_nan_and_inf_values_round_trip(db, run_id):
    repo.log_step_metrics(db, run_id, [("loss", 0, 0, float("nan")), ("loss", 1, 0, float("inf"))])
    repo.log_epoch(db, run_id, 0, {"loss": float("nan")}, [float("nan"), 1.0])
    values = [p.value for p in repo.get_step_series(db, run_id, "loss")]
    assert math.isnan(values[0]) and values[1] == math.inf
    assert math.isnan(repo.get_epoch_series(db, run_id)["loss"][0][1])
    acc = repo.get_class_accuracy(db, run_id)
    assert math.isnan(acc[0]) and acc[1] == 1.0
    assert math.isnan(repo.latest_metrics(db, run_id)["loss"])


def test_nan_is_stored_as_null_on_every_backend(db, run_id):
    """The same values in the records whatever the backend: PostgreSQL could hold NaN (and
    would sort it above every number), SQLite cannot; both hold NULL."""
    repo.log_step_metrics(db, run_id, [("loss", 0, 0, float("nan")), ("loss", 1, 0, 0.5),
                                       ("loss", 2, 0, float("-inf"))])
    repo.log_epoch(db, run_id, 0, {"loss": float("nan")}, None)
    assert _rows(db, "SELECT step, value FROM step_metrics ORDER BY step") == [
        (0, None), (1, 0.5), (2, -math.inf)]
    assert _rows(db, "SELECT value FROM epoch_metrics") == [(None,)]
    assert _rows(db, "SELECT value FROM latest_metrics") == [(None,)]
    assert _rows(db, "SELECT max(value) FROM step_metrics") == [(0.5,)]


def test_floats_and_large_integers_round_trip_exactly(db, run_id):
    """Double precision on both (SQLite REAL, PostgreSQL double precision); whole numbers
    are 64-bit on both (PostgreSQL's integer would stop at 2**31)."""
    big = 2 ** 62
    values = [0.1, 1 / 3, 1e-300, 1.7976931348623157e308, -0.0, 123456789.123456789]
    repo.log_step_metrics(db, run_id, [("x", big + i, big, v) for i, v in enumerate(values)])
    got = repo.get_step_series(db, run_id, "x")
    assert [(p.step, p.epoch, p.value) for p in got] == [
        (big + i, big, v) for i, v in enumerate(values)]
    repo.update_run(db, run_id, pid=2 ** 40, heartbeat_at=1712345678.123456)
    rec = repo.get_run(db, run_id)
    assert (rec.pid, rec.heartbeat_at) == (2 ** 40, 1712345678.123456)


def test_latest_metrics_upsert_keeps_the_last_write(db, run_id):
    repo.log_step_metrics(db, run_id, [("loss", 0, 0, 3.0), ("loss", 1, 0, 2.0), ("lr", 1, 0, .1)])
    assert repo.latest_metrics(db, run_id) == {"loss": 2.0, "lr": 0.1}
    repo.log_epoch(db, run_id, 0, {"loss": 2.5, "acc": 0.4}, None)
    assert repo.latest_metrics(db, run_id) == {"loss": 2.5, "lr": 0.1, "acc": 0.4}
    repo.log_step_metrics(db, run_id, [("loss", 2, 1, 1.5)])
    repo.log_epoch(db, run_id, 1, {"acc": 0.6}, None)
    assert repo.latest_metrics(db, run_id) == {"loss": 1.5, "lr": 0.1, "acc": 0.6}
    rows = _rows(db, "SELECT key, step, epoch FROM latest_metrics WHERE run_id = :r "
                     "ORDER BY key", r=run_id)
    assert rows == [("acc", None, 1), ("loss", 2, 1), ("lr", 1, 0)]
    assert repo.get_run(db, run_id).latest == {"loss": 1.5, "lr": 0.1, "acc": 0.6}


def test_log_epoch_round_trip(db, run_id):
    repo.log_epoch(db, run_id, 0, {"acc": 0.3, "loss": 2.0}, [0.5, 0.1])
    repo.log_epoch(db, run_id, 1, {"acc": 0.5, "loss": 1.0}, [0.7, 0.3])
    repo.log_epoch(db, run_id, 2, {"acc": 0.6}, None)
    assert repo.get_run(db, run_id).epoch == 2
    assert repo.get_epoch_series(db, run_id) == {"acc": [(0, 0.3), (1, 0.5), (2, 0.6)],
                                                 "loss": [(0, 2.0), (1, 1.0)]}
    assert repo.get_epoch_series(db, run_id, after_epoch=0) == {"acc": [(1, 0.5), (2, 0.6)],
                                                                "loss": [(1, 1.0)]}
    assert repo.get_class_accuracy(db, run_id) == [0.7, 0.3]  # latest epoch with a vector
    assert repo.get_class_accuracy(db, run_id, 0) == [0.5, 0.1]
    assert repo.get_class_accuracy(db, run_id, 2) is None
    assert repo.get_class_accuracy(db, run_id, kind="f1") is None
    assert repo.get_all_class_accuracy(db, run_id) == {0: [0.5, 0.1], 1: [0.7, 0.3]}
    assert repo.metric_keys(db, run_id) == []  # epoch scalars are not step metrics


def test_relogging_an_epoch_replaces_it(db, run_id):
    repo.log_epoch(db, run_id, 0, {"acc": 0.3}, [0.5, 0.1])
    repo.log_epoch(db, run_id, 0, {"acc": 0.4}, [0.6, 0.2])
    assert repo.get_epoch_series(db, run_id) == {"acc": [(0, 0.4)]}
    assert repo.get_all_class_accuracy(db, run_id) == {0: [0.6, 0.2]}


def test_log_epoch_for_unknown_run(db):
    with pytest.raises(StoreError, match="no run 5"):
        repo.log_epoch(db, 5, 0, {"acc": 1.0}, [1.0])


def test_empty_reads_for_unknown_run(db):
    assert repo.latest_metrics(db, 404) == {}
    assert repo.get_epoch_series(db, 404) == {}
    assert repo.get_all_class_accuracy(db, 404) == {}
    assert repo.metric_keys(db, 404) == []


# -- dataset specs --------------------------------------------------------------------------

def test_dataset_spec_round_trip_replace_and_delete(db):
    spec_id = repo.save_dataset_spec(db, "c10-lt100", {"name": "cifar10", "imbalance_factor": 100})
    got = repo.get_dataset_spec(db, "c10-lt100")
    assert isinstance(got, DatasetSpecRecord)
    assert (got.id, got.spec) == (spec_id, {"name": "cifar10", "imbalance_factor": 100})
    assert repo.save_dataset_spec(db, "c10-lt100", {"name": "cifar10", "imbalance_factor": 50}) \
        == spec_id
    assert repo.get_dataset_spec(db, "c10-lt100").spec["imbalance_factor"] == 50
    repo.save_dataset_spec(db, "a-first", {})
    assert [s.name for s in repo.list_dataset_specs(db)] == ["a-first", "c10-lt100"]
    run_id = repo.create_run(db, config={}, epochs_total=1, dataset_spec_id=spec_id)
    repo.delete_dataset_spec(db, "c10-lt100")
    assert repo.get_dataset_spec(db, "c10-lt100") is None
    assert repo.get_run(db, run_id).dataset_spec_id is None  # ON DELETE SET NULL
    with pytest.raises(StoreError, match="c10-lt100"):
        repo.delete_dataset_spec(db, "c10-lt100")


def test_run_with_unknown_dataset_spec_is_refused(db):
    with pytest.raises(StoreError, match="(?i)FOREIGN KEY"):
        repo.create_run(db, config={}, epochs_total=1, dataset_spec_id=12345)
    assert repo.list_runs(db) == []


# -- named configs --------------------------------------------------------------------------

def test_config_versioning(db):
    v1 = repo.save_config(db, "mine", {"lr": 0.1, "nested": {"a": [1, 2]}})
    assert isinstance(v1, ConfigRecord) and v1.version == 1
    assert repo.save_config(db, "mine", {"nested": {"a": [1, 2]}, "lr": 0.1}) == v1  # same
    v2 = repo.save_config(db, "mine", {"lr": 0.2})
    assert v2.version == 2 and v2.id != v1.id
    v3 = repo.save_config(db, "mine", {"lr": 0.1, "nested": {"a": [1, 2]}})  # back to v1
    assert v3.version == 3
    assert repo.get_config(db, "mine") == v3
    assert repo.get_config(db, "mine", 2).config == {"lr": 0.2}
    assert repo.get_config(db, "mine", 9) is None
    assert repo.get_config(db, "other") is None
    repo.save_config(db, "another", {"x": 1})
    assert [(c.name, c.version) for c in repo.list_configs(db)] == [("another", 1), ("mine", 3)]
    run_id = repo.create_run(db, config=v2.config, epochs_total=1, config_id=v2.id)
    assert repo.get_run(db, run_id).config_id == v2.id


def test_tags_and_notes(db):
    a = repo.create_run(db, config={}, epochs_total=1)
    b = repo.create_run(db, config={}, epochs_total=1)
    assert repo.set_tags(db, a, add=["baseline", "if100", "baseline"]) == ("baseline", "if100")
    assert repo.set_tags(db, b, add=["if100"]) == ("if100",)
    assert repo.set_tags(db, a, remove=["baseline", "never-there"]) == ("if100",)
    assert [r.id for r in repo.list_runs(db, tag="if100")] == [b, a]
    assert repo.list_runs(db, tag="baseline") == []
    assert repo.all_tags(db) == {"if100": 2}
    repo.set_note(db, a, "lr too high?\nrerun with 0.05")
    assert repo.get_run(db, a).note == "lr too high?\nrerun with 0.05"
    assert repo.get_run(db, a).tags == ("if100",)
    repo.set_note(db, a, "")
    assert repo.get_run(db, a).note is None
    for bad in ("", "two words", "a,b", "x" * 65, "esc\x1b"):
        with pytest.raises(ValueError, match="tag"):
            repo.set_tags(db, a, add=[bad])
    with pytest.raises(StoreError, match="no run 999"):
        repo.set_tags(db, 999, add=["x"])
    with pytest.raises(StoreError, match="no run 999"):
        repo.set_note(db, 999, "x")
    repo.delete_run(db, a)
    assert repo.all_tags(db) == {"if100": 1}  # cascade
