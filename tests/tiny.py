"""Tiny problems and runs shared by the engine, meta and method tests.

- :func:`tiny_problem`: a method attached to a ``resnet_tiny`` on 11 random 8x8 images of 3
  classes (counts 6, 3, 2) and a balanced meta set of 6, in float64 by default: the size the
  exact hypergradient tests run at.
- :func:`perturb`: moves φ off its initialisation (where some hypergradients vanish), the same
  way every time.
- :func:`tiny_data` / :func:`fit_tiny`: a real run on the built-in digits-LT on the CPU,
  recorded in memory, optionally stopped (:class:`StopAt`) or resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch

from mfm.config import Config, load_config
from mfm.data import build_data
from mfm.engine.callbacks import Callbacks, Recorder, Tee
from mfm.engine.device import seed_everything
from mfm.engine.training import RunStopped, fit
from mfm.methods import create_method
from mfm.models import create_model

__all__ = ["CPU", "COUNTS", "TINY_RUN", "Problem", "StopAt", "fit_tiny", "perturb",
           "tiny_data", "tiny_problem"]

CPU = torch.device("cpu")
COUNTS = [6, 3, 2]  # training images per class of tiny_problem
TINY_RUN = ["model.name=resnet_tiny", "device=cpu", "train.batch_size=64"]


class Problem(NamedTuple):
    cfg: Config
    method: Any
    model: torch.nn.Module
    x: torch.Tensor
    y: torch.Tensor
    xm: torch.Tensor
    ym: torch.Tensor


def perturb(method: Any, scale: float = 0.3, seed: int = 1) -> None:
    """Add ``scale`` × a seeded normal draw to every meta parameter φ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in method.meta_params:
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def tiny_problem(name: str, overrides: Sequence[str] = (), *, dtype: torch.dtype = torch.float64,
                 seed: int = 0, perturbed: bool = False) -> Problem:
    """Method ``name`` (configured by ``overrides``) attached to a resnet_tiny of 1 input
    channel and 3 classes, with a training batch (x, y) and the meta set (xm, ym)."""
    cfg = load_config(None, [f"method.name={name}", "model.name=resnet_tiny",
                             "train.batch_size=11", "train.epochs=4", *overrides])
    torch.manual_seed(seed)
    method = create_method(cfg, COUNTS)
    model = create_model("resnet_tiny", num_classes=3, in_channels=1).to(dtype)
    y = torch.tensor(sum(([c] * n for c, n in enumerate(COUNTS)), []))
    x = torch.randn(len(y), 1, 8, 8, dtype=dtype)
    ym = torch.tensor([0, 0, 1, 1, 2, 2])
    xm = torch.randn(len(ym), 1, 8, 8, dtype=dtype)
    method.attach(model=model, meta_x=xm, meta_y=ym, device=CPU)
    method.meta_module.to(dtype)
    if perturbed:
        perturb(method)
    return Problem(cfg, method, model, x, y, xm, ym)


class StopAt(Callbacks):
    """Asks the run to stop at its first step of epoch ``epoch`` (0-based): the checkpoint of
    epoch ``epoch - 1`` is the last one written."""

    def __init__(self, epoch: int):
        self.epoch, self.now = epoch, -1

    def on_epoch_start(self, epoch: int) -> None:
        self.now = epoch

    def should_stop(self) -> bool:
        return self.now == self.epoch


def tiny_data(overrides: Sequence[str] = ()) -> tuple[Config, Any]:
    """The config (``TINY_RUN`` + ``overrides``) and its data on the CPU, seeded as a run is."""
    cfg = load_config(None, [*TINY_RUN, *overrides])
    seed_everything(cfg.seed, CPU)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=CPU, seed=cfg.seed)
    return cfg, data


def fit_tiny(overrides: Sequence[str] = (), ckpt: Path | None = None, *,
             stop_at: int | None = None, resume: bool = False,
             callbacks: Callable[[Recorder], Callbacks] | None = None,
             stops: tuple[type[BaseException], ...] = (),
             init_from: Path | None = None) -> Recorder:
    """Train ``TINY_RUN`` + ``overrides`` and return what was recorded. ``stop_at``: stop at
    that epoch (RunStopped is caught); ``callbacks(recorder)`` builds the callbacks instead;
    ``stops``: further exceptions that end the run quietly (a simulated kill); ``init_from``:
    a parent's checkpoint file (train.init_from resolved)."""
    cfg, data = tiny_data(overrides)
    rec = Recorder()
    cbs: Callbacks = Tee(rec, StopAt(stop_at)) if stop_at is not None else rec
    if callbacks is not None:
        cbs = callbacks(rec)
    quiet: tuple[type[BaseException], ...] = (RunStopped, *stops)
    try:
        fit(cfg, data, device=CPU, callbacks=cbs, checkpoint_dir=ckpt, resume=resume,
            init_from=init_from)
    except quiet:
        pass
    return rec
