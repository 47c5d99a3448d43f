"""The Method base class: a training loss plus a default training step.

A method is built as ``Method(config, class_counts)`` from the run's whole ``Config`` (``cfg`` is
its method section, ``epochs`` its ``train.epochs``) and the per-class training counts (all >= 1).
``epoch`` arguments are 0-based. The engine calls every hook below on every method; the base
versions do nothing, so a method overrides only what it needs.

A loss is written once, per sample (:meth:`Method.per_sample`); the base reduces it to the
**terms** (N,) whose sum is the training loss: ``l_i / N``, or with ``method.reweight`` on,
``w_{y_i} l_i / sum_j w_{y_j}`` (class-balanced weights, the weighted mean of torch's
``cross_entropy(weight=)``). The real step (``optim.sam``: plain, SAM or ImbSAM,
mfm.optim.steps) takes a closure returning those terms, so every ingredient composes with
every loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfm.config import REWEIGHT_METHODS, Config
from mfm.optim.steps import RealStep, make_step

__all__ = ["Method", "check_counts", "class_balanced_weights", "log_prior"]


def class_balanced_weights(class_counts: Sequence[int], beta: float) -> list[float]:
    """w_c = (1 - beta) / (1 - beta^{n_c}) (Cui et al., CVPR 2019), normalised to sum to the
    number of classes."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1) (got {beta})")
    raw = [(1.0 - beta) / (1.0 - beta ** n) for n in class_counts]
    total = sum(raw)
    return [w * len(raw) / total for w in raw]


def log_prior(class_counts: Sequence[int]) -> list[float]:
    """log pi_c, pi_c = n_c / sum_n: the training class prior."""
    total = sum(class_counts)
    return [math.log(n / total) for n in class_counts]


def check_counts(class_counts: Sequence[int]) -> tuple[int, ...]:
    """Validate per-class training counts: a non-empty sequence of integers >= 1."""
    counts = tuple(class_counts)
    if not counts:
        raise ValueError("class_counts is empty: need one training count per class")
    bad = [(c, n) for c, n in enumerate(counts)
           if isinstance(n, bool) or not float(n).is_integer() or n < 1]
    if bad:
        raise ValueError("class_counts must be integers >= 1 (every class needs a training "
                         f"image); bad entries (class, count): {bad}")
    return tuple(int(n) for n in counts)


class Method:
    """Base class. Subclasses set ``name`` (done by ``@register_method``) and implement ``loss``.

    ``classifier`` is the last layer the method expects when ``model.classifier = auto``.
    ``lr_lead_epochs``: the engine's lr schedule runs this many epochs ahead (epoch e trains
    at the schedule's lr of epoch e + lead; Meta-Weight-Net's ``mwnet.lr_lead_epochs``).
    """

    name: str = "base"
    classifier: str = "linear"
    lr_lead_epochs: int = 0
    # False: a stage-2 method that only changes prediction (tau_norm); the engine then runs
    # no training step
    trains: bool = True

    def __init__(self, config: Config, class_counts: Sequence[int]):
        epochs = config.train.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1 (got {epochs!r})")
        self.config = config
        self.cfg = config.method
        self.class_counts = check_counts(class_counts)
        self.num_classes = len(self.class_counts)
        self.epochs = epochs
        self._cache: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}
        self.reweight = self.cfg.reweight if self.name in REWEIGHT_METHODS else "none"
        self.class_weights = (class_balanced_weights(self.class_counts, self.cfg.cb_beta)
                              if self.reweight != "none" else [])
        # The epsilon keeps e.g. 0.29 * 100 = 28.999999999999996 at epoch 29.
        self.drw_epoch = math.floor(self.cfg.drw_start * epochs + 1e-9)
        o = config.optim
        self.real_step: RealStep = make_step(o.sam, rho=o.sam_rho,
                                             class_counts=self.class_counts,
                                             threshold=o.imbsam_threshold)

    # -- set-up and end, called by the engine ---------------------------------------------------
    def attach(self, *, model: nn.Module, meta_x: torch.Tensor, meta_y: torch.Tensor,
               device: torch.device, **options: Any) -> None:
        """Called once the model is built (and on ``device``), before any step: meta methods
        take the model and the balanced meta set here. ``options`` are the run's method
        options (``fit(method_options=...)``, e.g. mfm's ``modulator_path``)."""

    def set_meta_set(self, meta_x: torch.Tensor, meta_y: torch.Tensor) -> None:
        """Called by the engine when the meta set changes (data.meta_source=resampled, at
        the start of an epoch); methods without a meta set ignore it."""

    def on_fit_end(self, checkpoint_dir: Path | None) -> None:
        """Called once training ended (not for a stopped or failed run): a method writes its
        own files to ``checkpoint_dir`` here (MFM: the modulator, for transfer)."""

    # -- the loss -------------------------------------------------------------------------------
    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        """The unreduced training loss (N,) of ``logits`` (N, C) for ``targets`` (N,)."""
        raise NotImplementedError

    def reweighting(self, epoch: int) -> bool:
        """Whether ``method.reweight``'s class weights are on at this (0-based) epoch: always
        for cb, from ``floor(drw_start * epochs)`` on for drw (0.8 of 200 = epoch 160)."""
        return self.reweight == "cb" or (self.reweight == "drw" and epoch >= self.drw_epoch)

    def reduce(self, per: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        """Per-sample losses -> the terms (N,) whose sum is the training loss."""
        if self.reweighting(epoch):
            w = self._const("reweight", self.class_weights, per)[targets]
            return per * w / w.sum()
        return per / per.shape[0]

    def terms(self, logits: torch.Tensor, targets: torch.Tensor, *,
              epoch: int) -> torch.Tensor:
        """The terms (N,) of the training loss: their sum is :meth:`loss`."""
        return self.reduce(self.per_sample(logits, targets, epoch=epoch), targets, epoch=epoch)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        """Scalar training loss (the mean over the batch, or the re-weighted mean)."""
        return self.terms(logits, targets, epoch=epoch).sum()

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                      x: torch.Tensor, y: torch.Tensor, *, epoch: int,
                      step: int) -> dict[str, torch.Tensor]:
        """One optimiser step (``self.real_step``: plain, SAM or ImbSAM). Returns detached
        tensors (no device sync; the caller .item()s)."""
        loss = self.real_step(model, optimizer,
                              lambda: self.terms(model(x), y, epoch=epoch), y)
        return {"loss": loss}

    def eval_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits used for prediction (argmax) at evaluation. Identity by default."""
        return logits

    # -- a prediction tau chosen on the validation split (la post-hoc, tau_norm) ---------------
    def tau_choices(self) -> tuple[float, ...] | None:
        """The taus to choose the prediction's tau from on the validation split (None: the
        method has none, or uses the one configured)."""
        return None

    def logits_at(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        """Prediction logits with ``tau`` (methods with :meth:`tau_choices`)."""
        raise NotImplementedError

    def set_tau(self, tau: float) -> None:
        """Predict with ``tau`` from now on (methods with :meth:`tau_choices`)."""
        raise NotImplementedError

    # -- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} keeps no state; got keys {sorted(state)}")

    # -- helpers --------------------------------------------------------------------------------
    def _const(self, key: str, values: Sequence[float], like: torch.Tensor) -> torch.Tensor:
        """A per-class constant on ``like``'s device and dtype, copied there once and cached."""
        k = (key, like.device, like.dtype)
        t = self._cache.get(k)
        if t is None:
            t = torch.tensor(list(values), dtype=torch.float64).to(like.device, like.dtype)
            self._cache[k] = t
        return t

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, classes={self.num_classes})"
