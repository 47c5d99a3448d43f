"""Learning-rate schedule: optional linear warm-up, then multi-step decay (stepped per epoch)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["milestone_epochs", "lr_factor", "make_scheduler"]


def milestone_epochs(fractions: Sequence[float], epochs: int) -> list[int]:
    """Fractions of the run -> epoch numbers: (0.8, 0.9) of 100 epochs -> [80, 90]."""
    return [int(round(f * epochs)) for f in fractions]


def lr_factor(epoch: int, *, warmup_epochs: int, milestones: Sequence[int], decay: float) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return decay ** sum(1 for m in milestones if epoch >= m)


def make_scheduler(optimizer: torch.optim.Optimizer, *, epochs: int, warmup_epochs: int,
                   milestones: Sequence[float], decay: float) -> torch.optim.lr_scheduler.LambdaLR:
    ms = milestone_epochs(milestones, epochs)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: lr_factor(e, warmup_epochs=warmup_epochs, milestones=ms, decay=decay))
