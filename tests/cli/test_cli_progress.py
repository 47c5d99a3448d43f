"""The foreground progress bar's words: before the first logged step of a run (an epoch
shorter than train.log_every) it says "loss —", never "loss nan"."""

from __future__ import annotations

import io

from rich.console import Console

from mfm.cli.progress import RichProgress
from mfm.engine.callbacks import EpochResult, StartInfo


def _info() -> StartInfo:
    return StartInfo(device="cpu", split_hash="x", classes=["a", "b"], train_counts=[5, 1],
                     meta_counts=[1, 1], test_counts=[2, 2], epochs=2, start_epoch=0,
                     steps_per_epoch=3, num_parameters=10)


def test_the_step_bar_says_no_loss_until_one_is_logged():
    progress = RichProgress(Console(file=io.StringIO(), width=120))
    progress.on_start(_info())
    progress.on_epoch_start(0)
    progress.on_step(0, 0, None)  # train.log_every larger than the epoch: no value yet
    assert progress.info_text() == "loss —"
    progress.on_step(0, 1, {"loss": 0.5})
    assert progress.info_text() == "loss 0.5000"
    progress.on_epoch(EpochResult(epoch=0, scalars={"acc": 0.25}, class_acc=[0.5, 0.0],
                                  is_best=True))
    assert progress.info_text() == "loss 0.5000  acc 25.00%"
    progress.stop()
