"""The Method base class: a training loss plus a default training step.

A method is built as ``Method(config, class_counts)`` from the run's whole ``Config`` (``cfg`` is
its method section, ``epochs`` its ``train.epochs``) and the per-class training counts (all >= 1).
``epoch`` arguments are 0-based. The engine calls every hook below on every method; the base
versions do nothing, so a method overrides only what it needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mfm.config import Config

__all__ = ["Method", "check_counts"]


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
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        """Scalar training loss (mean over the batch) of ``logits`` (N, C) for ``targets`` (N,)."""
        raise NotImplementedError

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                      x: torch.Tensor, y: torch.Tensor, *, epoch: int,
                      step: int) -> dict[str, torch.Tensor]:
        """One optimiser step. Returns detached tensors (no device sync; the caller .item()s)."""
        optimizer.zero_grad(set_to_none=True)
        logits = model(x)
        loss = self.loss(logits, y, epoch=epoch)
        torch.autograd.backward(loss)  # loss.backward(), which torch leaves unannotated
        optimizer.step()
        return {"loss": loss.detach()}

    def eval_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits used for prediction (argmax) at evaluation. Identity by default."""
        return logits

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
