"""The learning-rate schedule's arithmetic: optional linear warm-up, then multi-step decay or a
cosine (per epoch). Torch-free, so methods can read the schedule too (Meta-Weight-Net's
``mwnet.lr_lead_epochs``); the engine's scheduler (mfm.engine.schedule) is built on it."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["SCHEDULES", "milestone_epochs", "lr_factor"]

SCHEDULES = ("step", "cosine")


def milestone_epochs(fractions: Sequence[float], epochs: int) -> list[int]:
    """Fractions of the run -> epoch numbers: (0.8, 0.9) of 100 epochs -> [80, 90]."""
    return [int(round(f * epochs)) for f in fractions]


def lr_factor(epoch: int, *, warmup_epochs: int, milestones: Sequence[int], decay: float,
              schedule: str = "step", epochs: int = 0) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based).

    ``step``: ``decay`` once per milestone reached. ``cosine``: after the warm-up,
    0.5 (1 + cos(pi (epoch - warmup) / (epochs - warmup))), 1 at the first epoch after the
    warm-up and approaching 0 at the end (``epochs`` = the run's length; ``milestones`` and
    ``decay`` are not used)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    if schedule == "cosine":
        span = max(epochs - warmup_epochs, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(epoch - warmup_epochs, span) / span))
    if schedule != "step":
        raise ValueError(f"optim.schedule must be one of {' | '.join(SCHEDULES)} "
                         f"(got {schedule!r})")
    return decay ** sum(1 for m in milestones if epoch >= m)
