"""A run interrupted after epoch k and resumed gives exactly the per-epoch metrics of an
uninterrupted run (CPU), and a process killed between writing an epoch's checkpoint and
recording that epoch leaves no hole in the records once resumed."""

from __future__ import annotations

import pytest
import torch

from mfm.config import load_config
from mfm.data import build_data
from mfm.engine import Callbacks, Recorder, RunStopped, Tee, fit, seed_everything
from mfm.engine.metrics import seconds_to_fraction
from mfm.runner.sink import StoreSink
from mfm.store import Database, repo

CPU = torch.device("cpu")


class StopAt(Callbacks):
    def __init__(self, epoch: int):
        self.epoch, self.now = epoch, -1

    def on_epoch_start(self, epoch: int) -> None:
        self.now = epoch

    def should_stop(self) -> bool:
        return self.now == self.epoch


class Killed(Exception):
    """Stands for a kill -9 that lands after the checkpoint write and before the record."""


class DieBeforeRecording(Callbacks):
    """Placed before the store in a Tee: raises from on_epoch of ``epoch``, whose checkpoint
    is already on disk, so the callbacks after it never see that epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_epoch(self, result) -> None:
        if result.epoch == self.epoch:
            raise Killed


def run(overrides, ckpt, *, stop_at=None, resume=False, callbacks=None):
    cfg = load_config(None, ["model.name=resnet_tiny", "train.epochs=4", "device=cpu",
                             "train.batch_size=64", "optim.milestones=0.5", *overrides])
    seed_everything(cfg.seed, CPU)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=CPU, seed=cfg.seed)
    rec = Recorder()
    cbs = Tee(rec, StopAt(stop_at)) if stop_at is not None else rec
    if callbacks is not None:
        cbs = callbacks(rec)
    try:
        fit(cfg, data, device=CPU, callbacks=cbs, checkpoint_dir=ckpt, resume=resume)
    except (RunStopped, Killed):
        pass
    return rec


def scalars(rec):
    return {e.epoch: ({k: v for k, v in e.scalars.items() if k != "epoch_seconds"}, e.class_acc)
            for e in rec.epochs}


@pytest.mark.parametrize("overrides", [[], ["method.name=mfm", "mfm.meta_interval=2"],
                                       ["method.name=ldam_drw", "method.drw_start=0.5"],
                                       # resumed at epoch 2: epoch 0's meta draw, then a new
                                       # one at 3; the virtual step reads momentum buffers
                                       ["method.name=mfm", "mfm.meta_interval=2",
                                        "data.meta_source=resampled",
                                        "data.meta_resample_epochs=3",
                                        "mfm.virtual_step=mirror"]],
                         ids=["ce", "mfm", "ldam_drw", "mfm_resampled_mirror"])
def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, overrides):
    full = scalars(run(overrides, tmp_path / "full"))
    first = run(overrides, tmp_path / "cut", stop_at=2)
    assert [e.epoch for e in first.epochs] == [0, 1]
    second = run(overrides, tmp_path / "cut", resume=True)
    assert second.info.start_epoch == 2
    resumed = {**scalars(first), **scalars(second)}
    assert sorted(resumed) == [0, 1, 2, 3]
    for epoch in range(4):
        assert resumed[epoch] == full[epoch], f"epoch {epoch} differs"
    assert second.summary["best"] == run(overrides, tmp_path / "again").summary["best"]


def test_time_to_accuracy_is_kept_across_a_resume(tmp_path):
    full = run([], tmp_path / "full")
    accs = [e.scalars["acc"] for e in full.epochs]
    secs = [e.scalars["epoch_seconds"] for e in full.epochs]
    assert full.summary["seconds_to_95"] == seconds_to_fraction(accs, secs)
    run([], tmp_path / "cut", stop_at=2)
    second = run([], tmp_path / "cut", resume=True)
    # the resumed run still knows the first two epochs' accuracy and seconds
    assert second.summary["seconds_to_95"] is not None
    assert 0 < second.summary["seconds_to_95"] <= second.summary["seconds_per_epoch"] * 4 + 1e-9


def test_resumed_between_meta_redraws_trains_on_the_draw_in_force(tmp_path):
    """data.meta_source=resampled, a new meta set every 2 epochs, resumed at epoch 3: epoch 3
    trains on epoch 2's draw, as the uninterrupted run did."""
    over = ["method.name=mfm", "data.meta_source=resampled", "data.meta_resample_epochs=2"]
    full = scalars(run(over, tmp_path / "full"))
    first = run(over, tmp_path / "cut", stop_at=3)
    second = run(over, tmp_path / "cut", resume=True)
    assert second.info.start_epoch == 3
    assert {**scalars(first), **scalars(second)} == full


def test_resume_announces_the_checkpointed_epoch_again(tmp_path):
    full = run([], tmp_path / "full")
    first = run([], tmp_path / "cut", stop_at=2)
    second = run([], tmp_path / "cut", resume=True)
    assert [r.epoch for r in second.restored] == [1]
    assert second.restored[0].scalars == first.epochs[1].scalars
    assert second.restored[0].class_acc == full.epochs[1].class_acc


EVERY_STEP = ["train.log_every=1"]


def test_kill_between_checkpoint_and_record_leaves_no_hole(tmp_path):
    """The records miss epoch 1 (its checkpoint was written); the resumed run fills it in from
    the checkpoint and goes on with epoch 2, so the store has every epoch once."""
    with Database(str(tmp_path / "experiments.db")) as db:
        run_id = repo.create_run(db, config={}, epochs_total=4)
        first = run(EVERY_STEP, tmp_path / "cut",
                    callbacks=lambda rec: Tee(DieBeforeRecording(1), StoreSink(db, run_id), rec))
        assert [e.epoch for e in first.epochs] == [0]
        assert repo.get_run(db, run_id).epoch == 0
        assert {e for e, _ in repo.get_epoch_series(db, run_id)["acc"]} == {0}
        second = run(EVERY_STEP, tmp_path / "cut", resume=True,
                     callbacks=lambda rec: Tee(StoreSink(db, run_id), rec))
        assert second.info.start_epoch == 2 and [r.epoch for r in second.restored] == [1]
        acc = repo.get_epoch_series(db, run_id)["acc"]
        assert [e for e, _ in acc] == [0, 1, 2, 3]
        full = run(EVERY_STEP, tmp_path / "full")
        assert [v for _, v in acc] == [e.scalars["acc"] for e in full.epochs]
        assert list(repo.get_all_class_accuracy(db, run_id)) == [0, 1, 2, 3]
        # epoch 1's step points were flushed before its checkpoint, and are not run again
        steps = repo.get_step_series(db, run_id, "loss")
        assert {p.epoch for p in steps} == {0, 1, 2, 3}
