"""A run interrupted after epoch k and resumed gives exactly the per-epoch metrics of an
uninterrupted run (CPU)."""

from __future__ import annotations

import pytest
import torch

from mfm.config import load_config
from mfm.data import build_data
from mfm.engine import Callbacks, Recorder, RunStopped, Tee, fit, seed_everything

CPU = torch.device("cpu")


class StopAt(Callbacks):
    def __init__(self, epoch: int):
        self.epoch, self.now = epoch, -1

    def on_epoch_start(self, epoch: int) -> None:
        self.now = epoch

    def should_stop(self) -> bool:
        return self.now == self.epoch


def run(overrides, ckpt, *, stop_at=None, resume=False):
    cfg = load_config(None, ["model.name=resnet_tiny", "train.epochs=4", "device=cpu",
                             "train.batch_size=64", "optim.milestones=0.5", *overrides])
    seed_everything(cfg.seed, CPU)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=CPU, seed=cfg.seed)
    rec = Recorder()
    cbs = Tee(rec, StopAt(stop_at)) if stop_at is not None else rec
    try:
        fit(cfg, data, device=CPU, callbacks=cbs, checkpoint_dir=ckpt, resume=resume)
    except RunStopped:
        pass
    return rec


def scalars(rec):
    return {e.epoch: ({k: v for k, v in e.scalars.items() if k != "epoch_seconds"}, e.class_acc)
            for e in rec.epochs}


@pytest.mark.parametrize("overrides", [[], ["method.name=mfm", "mfm.meta_interval=2"],
                                       ["method.name=ldam_drw", "method.drw_start=0.5"]],
                         ids=["ce", "mfm", "ldam_drw"])
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
