"""A run interrupted after epoch k and resumed gives exactly the per-epoch metrics of an
uninterrupted run (CPU), and a process killed between writing an epoch's checkpoint and
recording that epoch leaves no hole in the records once resumed."""

from __future__ import annotations

import pytest
import torch
from tiny import fit_tiny

from mfm.engine import Callbacks, Tee
from mfm.engine.checkpoint import load_checkpoint
from mfm.runner.sink import StoreSink
from mfm.store import Database, repo


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
    return fit_tiny(["train.epochs=4", "optim.milestones=0.5", *overrides], ckpt,
                    stop_at=stop_at, resume=resume, callbacks=callbacks, stops=(Killed,))


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
    uninterrupted = run(overrides, tmp_path / "full")
    full = scalars(uninterrupted)
    first = run(overrides, tmp_path / "cut", stop_at=2)
    assert [e.epoch for e in first.epochs] == [0, 1]
    second = run(overrides, tmp_path / "cut", resume=True)
    assert second.info.start_epoch == 2
    resumed = {**scalars(first), **scalars(second)}
    assert sorted(resumed) == [0, 1, 2, 3]
    for epoch in range(4):
        assert resumed[epoch] == full[epoch], f"epoch {epoch} differs"
    assert second.summary["best"] == uninterrupted.summary["best"]
    assert second.summary["best_on"] == uninterrupted.summary["best_on"] == "test"
    # best.pt too: the resumed run kept (or replaced) the weights the uninterrupted run kept
    kept, want = (load_checkpoint(tmp_path / d / "best.pt") for d in ("cut", "full"))
    assert kept["epoch"] == want["epoch"] == uninterrupted.summary["best"]["epoch"]
    assert kept["model"].keys() == want["model"].keys()
    assert all(torch.equal(kept["model"][k], want["model"][k]) for k in want["model"])


def test_time_to_accuracy_is_kept_across_a_resume(tmp_path):
    full = run([], tmp_path / "full")
    accs = [e.scalars["acc"] for e in full.epochs]
    secs = [e.scalars["epoch_seconds"] for e in full.epochs]
    # by hand: the training seconds up to and including the first epoch at 95 % of the last
    first = next(i for i, a in enumerate(accs) if a >= 0.95 * accs[-1])
    assert full.summary["seconds_to_95"] == pytest.approx(sum(secs[:first + 1]), rel=1e-12)
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
