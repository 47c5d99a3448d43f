"""The learning-rate schedule's arithmetic: optional linear warm-up, then multi-step decay
(per epoch). Torch-free, so methods can read the schedule too (Meta-Weight-Net's
``mwnet.lr_lead_epochs``); the engine's scheduler (mfm.engine.schedule) is built on it."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["milestone_epochs", "lr_factor"]


def milestone_epochs(fractions: Sequence[float], epochs: int) -> list[int]:
    """Fractions of the run -> epoch numbers: (0.8, 0.9) of 100 epochs -> [80, 90]."""
    return [int(round(f * epochs)) for f in fractions]


def lr_factor(epoch: int, *, warmup_epochs: int, milestones: Sequence[int], decay: float) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return decay ** sum(1 for m in milestones if epoch >= m)
