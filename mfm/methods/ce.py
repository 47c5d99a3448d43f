"""Plain cross-entropy (mean over the batch, or re-weighted: method.reweight)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method
from .registry import register_method


@register_method("ce")
class CrossEntropy(Method):
    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none")
