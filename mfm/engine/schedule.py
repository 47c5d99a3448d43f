"""Learning-rate schedule: optional linear warm-up, then multi-step decay or a cosine (stepped
per epoch).
The arithmetic lives in mfm.schedule (torch-free); this module builds the torch scheduler."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mfm.schedule import lr_factor, milestone_epochs

__all__ = ["milestone_epochs", "lr_factor", "make_scheduler"]


def make_scheduler(optimizer: torch.optim.Optimizer, *, epochs: int, warmup_epochs: int,
                   milestones: Sequence[float], decay: float, lead: int = 0,
                   schedule: str = "step") -> torch.optim.lr_scheduler.LambdaLR:
    """Epoch e runs at the schedule's lr of epoch e + ``lead`` (a method's ``lr_lead_epochs``:
    Meta-Weight-Net's official code steps its real optimiser one epoch ahead). The lambda is
    rebuilt with the same lead on resume; the scheduler's state holds only the epoch count."""
    ms = milestone_epochs(milestones, epochs)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda e: lr_factor(e + lead, warmup_epochs=warmup_epochs, milestones=ms, decay=decay,
                            schedule=schedule, epochs=epochs))
