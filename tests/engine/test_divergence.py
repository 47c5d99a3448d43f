"""A run whose training loss or weights stop being finite ends as failed with one line saying
where (``diverged at epoch E, step S: loss nan``, E 1-based as in the log lines), keeps the
last good epoch's checkpoint, and ``mfm run --headless`` exits 1 with that line. A resume
without its checkpoint is refused instead of training from scratch."""

from __future__ import annotations

import importlib
import math
import re

import pytest
import torch
from click.testing import CliRunner

from mfm.cli.main import cli
from mfm.config import config_to_dict, load_config
from mfm.data import build_data
from mfm.engine import Callbacks, CheckpointMissing, Diverged, Recorder, Tee, fit, seed_everything
from mfm.engine.checkpoint import load_checkpoint
from mfm.engine.divergence import LossWatch, check_weights
from mfm.runner.execute import execute_run
from mfm.store import Database, repo

CPU = torch.device("cpu")
TINY = ["model.name=resnet_tiny", "train.epochs=2", "device=cpu", "train.batch_size=64"]
NAN = float("nan")
fit_module = importlib.import_module("mfm.engine.training")


def tiny(*overrides: str):
    cfg = load_config(None, [*TINY, *overrides])
    seed_everything(cfg.seed, CPU)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=CPU, seed=cfg.seed)
    return cfg, data


class Poison(Callbacks):
    """Writes NaN into a weight of the model under training: at the start of epoch
    ``epoch`` (0-based; its first step's loss is NaN) or, with ``at_step``, right after that
    global step (its loss was finite; the weights are not)."""

    def __init__(self, models: list[torch.nn.Module], *, epoch: int | None = None,
                 at_step: int | None = None):
        self.models, self.epoch, self.at_step = models, epoch, at_step

    def _poison(self) -> None:
        with torch.no_grad():
            next(self.models[-1].parameters()).view(-1)[0] = NAN

    def on_epoch_start(self, epoch: int) -> None:
        if epoch == self.epoch:
            self._poison()

    def on_step(self, epoch: int, step: int, values) -> None:
        if step == self.at_step:
            self._poison()


@pytest.fixture
def models(monkeypatch) -> list[torch.nn.Module]:
    """The models fit() builds, in order (fit calls build_model by its module's name)."""
    built: list[torch.nn.Module] = []
    real = fit_module.build_model

    def build(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(fit_module, "build_model", build)
    return built


def test_loss_watch_keeps_the_first_bad_step_without_reading_the_device():
    watch = LossWatch(first_step=10)
    for v in (1.0, 2.0, NAN, math.inf, 3.0):
        watch.observe(torch.tensor(v))
    with pytest.raises(Diverged) as caught:
        watch.check(epoch=2)
    assert str(caught.value) == "diverged at epoch 3, step 12: loss nan"
    assert (caught.value.epoch, caught.value.step) == (2, 12)
    good = LossWatch(first_step=1)
    for v in (1.0, 0.5):
        good.observe(torch.tensor(v))
    good.check(epoch=0)  # no raise
    inf = LossWatch(first_step=1)
    inf.observe(torch.tensor(-math.inf))
    with pytest.raises(Diverged, match=r"step 1: loss -inf$"):
        inf.check(epoch=0)


def test_check_weights_names_the_bad_tensor():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    check_weights(model, epoch=0, step=1)
    model[1].running_var[1] = math.inf
    with pytest.raises(Diverged, match=r"^diverged at epoch 1, step 5: weights not finite "
                                       r"\(1\.running_var\)$"):
        check_weights(model, epoch=0, step=5)


def test_huge_lr_diverges_in_the_first_epoch_and_writes_no_checkpoint(tmp_path):
    cfg, data = tiny("optim.lr=1e6")
    rec = Recorder()
    with pytest.raises(Diverged) as caught:
        fit(cfg, data, device=CPU, callbacks=rec, checkpoint_dir=tmp_path)
    assert re.fullmatch(r"diverged at epoch 1, step \d+: loss (nan|inf|-inf)", str(caught.value))
    assert rec.epochs == [] and not (tmp_path / "last.pt").exists()
    # the steps up to the bad one were reported, the bad one included when it was logged
    assert all(step <= caught.value.step for _, step, _ in rec.steps)


def _finite(state: dict) -> bool:
    return all(torch.isfinite(t).all() for t in state.values()
               if torch.is_tensor(t) and t.is_floating_point())


def test_divergence_in_epoch_2_fails_the_run_and_keeps_epoch_1(tmp_path, models):
    ckpt = tmp_path / "runs" / "1"
    cfg = load_config(None, TINY)
    with Database(str(tmp_path / "experiments.db")) as db:
        run_id = repo.create_run(db, config=config_to_dict(cfg), epochs_total=2,
                                 status="created")
        outcome = execute_run(db, run_id, checkpoint_dir=ckpt, resume=False,
                              extra_callbacks=(Poison(models, epoch=1),))
        rec = repo.get_run(db, run_id)
    steps = 8  # digits-LT, batch 64
    line = f"diverged at epoch 2, step {steps + 1}: loss nan"
    assert (outcome.status, outcome.error, outcome.reason) == ("failed", line, line)
    assert (rec.status, rec.error, rec.epoch) == ("failed", line, 0)
    last = load_checkpoint(ckpt / "last.pt")
    assert last["epoch"] == 0 and last["global_step"] == steps and _finite(last["model"])
    best = load_checkpoint(ckpt / "best.pt")
    assert best["epoch"] == 0 and _finite(best["model"])
    assert not list(ckpt.glob(".*.tmp"))


def test_weights_gone_bad_on_an_epochs_last_step_are_not_checkpointed(tmp_path, models):
    cfg, data = tiny()
    rec = Recorder()
    with pytest.raises(Diverged, match=r"^diverged at epoch 1, step 8: weights not finite "):
        fit(cfg, data, device=CPU, callbacks=Tee(rec, Poison(models, at_step=8)),
            checkpoint_dir=tmp_path)
    assert rec.epochs == [] and not (tmp_path / "last.pt").exists()


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    cfg, data = tiny("train.epochs=1")
    with pytest.raises(CheckpointMissing, match="cannot resume: checkpoint .*last.pt does not "
                                                "exist"):
        fit(cfg, data, device=CPU, checkpoint_dir=tmp_path, resume=True)


def test_headless_run_that_diverges_exits_1_with_one_line(tmp_path, cli_env):
    db_path = tmp_path / "experiments.db"
    args = ["run", "--headless", "--db", str(db_path)]
    for o in ("optim.lr=1e6", *TINY):
        args += ["--set", o]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 1, res.output
    said = [ln for ln in res.stderr.splitlines() if "diverged" in ln]
    assert len(said) == 1, res.stderr
    assert re.fullmatch(r"error: run 1 failed: diverged at epoch 1, step \d+: loss nan "
                        r"\(mfm show 1\)", said[0]), said
    with Database(str(db_path)) as db:
        rec = repo.get_run(db, 1)
    assert rec.status == "failed" and rec.error.startswith("diverged at epoch 1, step ")


def test_off_the_cpu_the_loss_is_read_only_on_logging_steps_and_at_epoch_end(monkeypatch):
    """Where a read waits on the device (CUDA), the watch is checked on logging steps (which
    read the values anyway) and once at the end of the epoch, never after every step."""
    from mfm.engine import train_one_epoch
    from mfm.engine.divergence import LossWatch as Watch
    from mfm.methods import create_method

    real_observe, checks = Watch.observe, []

    def observe(self, loss):
        real_observe(self, loss)
        self.check_is_free = False  # as on CUDA

    real_check = Watch.check
    monkeypatch.setattr(Watch, "observe", observe)
    monkeypatch.setattr(Watch, "check", lambda self, *, epoch: (checks.append(self._seen.item()),
                                                                real_check(self, epoch=epoch)))
    cfg, data = tiny()
    method = create_method(cfg, data.train_counts)
    model = fit_module.build_model(cfg, method, num_classes=data.num_classes,
                                   in_channels=data.in_channels, device=CPU)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    _, step = train_one_epoch(model, method, opt, data.train, epoch=0, global_step=0,
                              log_every=3, callbacks=Callbacks())
    assert step == 8 and checks == [3, 6, 8]
