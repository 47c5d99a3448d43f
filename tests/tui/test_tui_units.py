"""Pure pieces of the TUI: bounded series, formatting, form helpers, and the services' polling
contract (only what changed is read) against a real SQLite file."""

from __future__ import annotations

import math

import pytest

from mfm_tui.format import data_text, duration, groups_text, progress, run_matches
from mfm_tui.screens.configs import applies, config_from_values, flatten
from mfm_tui.screens.new_run import parse_overrides
from mfm_tui.screens.run import config_text, mod_rows
from mfm_tui.services import ServiceError
from mfm_tui.widgets.charts import count_ticks, order_by_count
from mfm_tui.widgets.keys_bar import pack
from mfm_tui.widgets.series import BoundedSeries, downsample

NOW = 1_700_000_000.0 + 3600.0  # the fixed clock of tests/tui/conftest.py


def test_bounded_series_stays_bounded_and_keeps_the_ends():
    s = BoundedSeries(capacity=100)
    s.extend((i, float(i)) for i in range(10_000))
    assert 50 <= len(s) <= 100
    assert 9999 - s.stride < s.xs[-1] <= 9999 and s.ys[-1] == s.xs[-1]  # the newest bucket
    assert s.xs == sorted(s.xs)
    assert s.xs[0] < 100  # the start of the curve is still there (one bucket wide)
    # only points beyond the last x are taken (a poll may overlap the previous one)
    assert s.extend([(5, 1.0), (10_000, 1.0)]) == 1


def test_downsample_to_width_means_buckets_and_skips_nan():
    xs = list(range(1000))
    ys = [float(x) for x in xs]
    ys[3] = math.nan
    dx, dy = downsample(xs, ys, 10)
    assert len(dx) == len(dy) == 10
    assert dx[0] == 0 and dx[-1] == 999
    assert all(not math.isnan(v) for v in dy)
    assert dy == sorted(dy)
    assert downsample([1, 2], [3.0, 4.0], 10) == ([1, 2], [3.0, 4.0])


def test_format_helpers():
    assert duration(59) == "59s" and duration(3661) == "1h01m" and duration(None) == "—"
    assert progress(3, 6, 6) == "▰▰▰▱▱▱"
    assert data_text({"data": {"name": "cifar10", "imbalance_factor": 100.0,
                               "profile": "step"}}) == "cifar10/IF100/step"


def test_overrides_are_split_between_keys_not_inside_lists():
    assert parse_overrides("train.epochs=2 optim.lr=0.05") == ["train.epochs=2", "optim.lr=0.05"]
    assert parse_overrides("optim.milestones=0.5,0.75, seed=3") == [
        "optim.milestones=0.5,0.75", "seed=3"]
    assert parse_overrides("  ") == []


def test_config_from_values_keeps_only_what_applies_and_differs():
    from mfm.config import describe

    fields = [f for f in describe() if not f.key.startswith("data.")]
    by_key = {f.key: f for f in fields}
    values = {f.key: f.default for f in fields}
    values.update({"optim.lr": 0.05, "mfm.bound": 2.0, "method.focal_gamma": 3.0})
    cfg = config_from_values(values, fields, "mfm")
    assert cfg == {"method": {"name": "mfm"}, "optim": {"lr": 0.05}, "mfm": {"bound": 2.0}}
    assert not applies(by_key["mfm.bound"], "ce")
    assert applies(by_key["method.focal_gamma"], "focal")
    assert not applies(by_key["method.focal_gamma"], "ce")
    # explicitly kept keys survive even at their default (no needless new version)
    cfg = config_from_values(values, fields, "ce", keep={"train.epochs"})
    assert cfg["train"] == {"epochs": 30}
    assert flatten({"seed": 1, "train": {"epochs": 2}}) == {"seed": 1, "train.epochs": 2}


def test_a_form_with_the_official_mwnet_preset_saves_a_choice_flipped_back_to_ours():
    from mfm.config import config_from_dict, describe

    fields = [f for f in describe() if not f.key.startswith("data.")]
    values = {f.key: f.default for f in fields}
    values["mwnet.preset"] = "official"  # every other mwnet key left at our default
    cfg = config_from_values(values, fields, "mwnet")
    # ours, kept explicitly, or the preset would replace each with the official value
    assert cfg["mwnet"]["detach_virtual_loss"] is True
    assert cfg["mwnet"]["meta_optimizer"] == "adam"
    assert config_from_dict(cfg).mwnet.detach_virtual_loss is True
    # a value equal to the preset's is not needed
    values.update({"mwnet.detach_virtual_loss": False, "mwnet.meta_optimizer": "sgd"})
    cfg = config_from_values(values, fields, "mwnet")
    assert "detach_virtual_loss" not in cfg["mwnet"] and "meta_optimizer" not in cfg["mwnet"]
    assert config_from_dict(cfg).mwnet.meta_optimizer == "sgd"


def test_chart_helpers_order_head_to_tail_and_label_counts():
    assert order_by_count([5, 50, 20, 50]) == [1, 3, 2, 0]
    ticks, labels = count_ticks([300, 100, 30, 10, 3], 80)
    assert ticks[0] == 1 and labels[0] == "300" and labels[-1] == "3"
    ticks, _ = count_ticks(list(range(100, 0, -1)), 35)
    assert len(ticks) <= 7


def test_run_screen_helpers():
    rows = mod_rows({"mod/stage1/gamma_mean": 1.5, "mod/stage1/gamma_std": 0.25, "acc": 0.5})
    assert rows == [("stage1", "1.5000", "0.2500", "—", "—")]
    text = config_text({"seed": 0, "method": {"name": "mfm"}})
    assert text.splitlines()[0] == "seed = 0" and "[method]" in text


def test_keys_bar_packs_into_lines():
    items = [("n", "New run", True), ("o", "Open", True), ("del", "Delete", False)]
    assert pack(items, 80) == [items]
    lines = pack(items, 12)
    assert len(lines) == 3 and lines[0] == [items[0]]


def test_filter_words_and_fields(fixed_db, make_services):
    s = make_services()
    runs = {r.name: r for r in s.list_runs()}
    assert run_matches(runs["mfm-live"], "status:running mfm")
    assert not run_matches(runs["mfm-live"], "status:completed")
    assert run_matches(runs["bs"], "balanced")
    assert not run_matches(runs["bs"], "method:ce")  # whole values: not balanced_softmax
    assert groups_text(runs["waiting"]) == "—"


def test_poll_runs_reads_only_what_changed(fixed_db, make_services):
    from mfm.store import Database, repo

    s = make_services()
    first = s.poll_runs({})
    assert len(first.changed) == 5 and first.removed == ()
    assert first.positions == {fixed_db["ids"]["waiting"]: 1}
    again = s.poll_runs(first.fingerprints)
    assert again.changed == () and again.removed == ()
    live = fixed_db["ids"]["mfm-live"]
    with Database(str(fixed_db["db"])) as db:
        repo.log_epoch(db, live, 3, {"acc": 0.9}, [0.9] * 10)
        repo.delete_run(db, fixed_db["ids"]["ce-base"])
    delta = s.poll_runs(again.fingerprints)
    assert [r.id for r in delta.changed] == [live]
    assert delta.changed[0].epoch == 3 and delta.changed[0].latest["acc"] == 0.9
    assert delta.removed == (fixed_db["ids"]["ce-base"],)


def test_run_series_fetches_only_new_points_and_log_lines(fixed_db, make_services):
    s = make_services()
    live = fixed_db["ids"]["mfm-live"]
    first = s.run_series(live)
    assert set(first.steps) == {"loss", "meta_loss", "mod/penultimate/gamma_mean"}
    assert len(first.steps["loss"]) == 30 and [e for e, _ in first.epochs["acc"]] == [0, 1, 2]
    assert first.class_acc is not None and len(first.log_lines) == 3
    nxt = s.run_series(live, after_step={k: v[-1][0] for k, v in first.steps.items()},
                       after_epoch=2, class_epoch=2, log_offset=first.log_offset)
    assert nxt.steps == {} and nxt.epochs == {} and nxt.class_acc is None and nxt.log_lines == []
    with open(first.run.log_path, "a") as f:
        f.write("epoch 4: acc 0.7\npartial line without newline")
    more = s.run_series(live, after_step={"loss": 30}, step_keys=["loss"], after_epoch=2,
                        class_epoch=2, log_offset=first.log_offset)
    assert more.log_lines == ["epoch 4: acc 0.7"]
    assert s.now() == NOW


def test_config_versions_and_guarded_delete(fixed_db, make_services):
    s = make_services()
    rec, msg = s.save_config("tiny-ce", {"method": {"name": "ce"}, "train": {"epochs": 2}})
    assert rec.version == 2 and "version 2" in msg and "runs 5 keep" in msg
    assert s.get_config("tiny-ce", 1).config["train"]["epochs"] == 1  # never changed under run 5
    with pytest.raises(ServiceError, match="used by run"):
        s.delete_config("tiny-ce")
    s.save_config("scratch", {"method": {"name": "focal"}})
    assert "deleted" in s.delete_config("scratch") and s.get_config("scratch") is None
    with pytest.raises(ServiceError, match="method.focal_gamma"):
        s.save_config("bad", {"method": {"name": "ce", "focal_gamma": 2.0}})


def test_delete_refuses_running_runs(fixed_db, make_services):
    s = make_services()
    with pytest.raises(ServiceError, match="cancel it before deleting"):
        s.delete_run(fixed_db["ids"]["mfm-live"])
    assert "deleted" in s.delete_run(fixed_db["ids"]["ce-broken"])
    assert s.get_run(fixed_db["ids"]["ce-broken"]) is None


def test_status_line_shows_supervisor_slots_gpus_and_counts():
    from mfm_tui.services import StatusInfo
    from mfm_tui.widgets.status_bar import status_text

    info = StatusInfo({"pid": 4242, "host": "box"}, 1, 4,
                      [{"index": 0, "util": 87.0, "mem_used": 10240.0, "mem_total": 81920.0}],
                      {"running": 1, "queued": 3, "completed": 9})
    text = status_text(info, "experiments.db")
    assert "supervisor: pid 4242" in text and "slots 1 busy/3 free" in text
    assert "GPU0 87% 10.0/80G" in text and "1 running 3 queued" in text
    assert "completed" not in text
    none = status_text(StatusInfo(None, 0, 0, [], {}), "x.db")
    assert "supervisor: none" in none and "GPU" not in none


def test_status_reads_the_lock_holder_and_worker_slots(fixed_db, make_services):
    from mfm.runner.launch import supervisor_lock
    from mfm.store import Database, queue

    s = make_services()
    assert s.status().supervisor is None
    lock = supervisor_lock(str(fixed_db["db"]), fixed_db["runs"])
    assert lock.acquire({"pid": 1234, "host": "testhost", "slots": ["cpu0", "cpu1"]})
    try:
        with Database(str(fixed_db["db"])) as db:
            queue.upsert_worker(db, host="testhost", pid=1234, proc_start=None,
                                slots=[{"name": "cpu0", "gpu": None, "run": 2},
                                       {"name": "cpu1", "gpu": None, "run": None}])
        info = s.status()
        assert info.supervisor["pid"] == 1234
        assert (info.slots_busy, info.slots_total) == (1, 2)
        assert info.counts["running"] == 1 and info.gpus == []
    finally:
        lock.release()


def test_where_text_of_a_slurm_job_names_the_job_and_slurms_word():
    from mfm.store.records import RESTART_NOTE, RunRecord
    from mfm_tui.format import where_text

    base = RunRecord(id=1, name="x", status="queued", created_at=0.0, started_at=None,
                     finished_at=None, host=None, pid=None, device=None, config={},
                     split_hash=None, error=None, summary=None, class_counts=None,
                     confusion=None, epochs_total=3, epoch=None, checkpoint_dir=None,
                     log_path=None, heartbeat_at=None, dataset_spec_id=None, config_id=None,
                     want_slot="slurm")
    assert where_text(base, 10.0) == "wants slurm"
    import dataclasses

    pending = dataclasses.replace(base, status="starting", slot="slurm.0", job_id="81",
                                  job_state="PENDING (Priority)")
    assert where_text(pending, 10.0) == "slurm.0 job 81 PENDING (Priority)"
    requeued = dataclasses.replace(pending, job_state="PENDING (BeginTime)",
                                   error=RESTART_NOTE + " (preempted)")
    assert "waits for its Slurm job to restart" in where_text(requeued, 10.0)
