"""MaxNorm by projected gradient descent (weight balancing, Alshammari et al., CVPR 2022).

After every optimiser step each row w_c of the classifier's weight whose L2 norm exceeds a
radius r is scaled down to norm r; rows inside it are left alone. The radius is fixed once,
from the norms at the start of training (in weight balancing's stage 2: the stage-1
classifier): r = min_c |w_c| + f (max_c |w_c| - min_c |w_c|), f = ``optim.max_norm``
(ShadeAlsha/LTR-weight-balancing, utils/regularizers.py, MaxNorm_via_PGD with thresh 0.1; the
bias, a vector, is not constrained there either). The radius is part of a checkpoint, so a
resumed run projects onto the same ball.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mfm.models.registry import classifier_module

__all__ = ["MaxNorm"]


def _weight(model: nn.Module) -> torch.Tensor:
    head = classifier_module(model)
    if not isinstance(head, nn.Linear):
        raise ValueError(f"optim.max_norm needs a linear classifier (one weight row per "
                         f"class); this model's is a {type(head).__name__}")
    return head.weight


class MaxNorm:
    """Projection of the model's declared classifier rows onto the ball of radius r."""

    def __init__(self, model: nn.Module, fraction: float):
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"optim.max_norm must be in (0, 1] (got {fraction})")
        self.weight = _weight(model)
        with torch.no_grad():
            norms = torch.linalg.vector_norm(self.weight, dim=1)
            self.radius = (norms.min() + fraction * (norms.max() - norms.min())).detach()

    @torch.no_grad()
    def apply(self) -> None:
        norms = torch.linalg.vector_norm(self.weight, dim=1, keepdim=True)
        scale = torch.where(norms > self.radius, self.radius / norms, torch.ones_like(norms))
        self.weight.mul_(scale)

    def state_dict(self) -> dict[str, Any]:
        return {"radius": self.radius.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.radius = state["radius"].to(self.weight.device, self.weight.dtype)
