"""Focal loss (Lin et al., ICCV 2017), softmax form: FL = -(1 - p_t)^gamma * log p_t.

Computed from ``log_softmax`` (no log of a probability), mean over the batch; gamma =
``method.focal_gamma`` (default 1). gamma = 0 is exactly cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method
from .registry import register_method


def focal_loss_per_sample(logits: torch.Tensor, targets: torch.Tensor,
                          gamma: float) -> torch.Tensor:
    """Per-sample focal loss (N,)."""
    logp = F.log_softmax(logits, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
    if gamma == 0:
        return -logp
    # 1 - p_t = -expm1(log p_t), accurate near p_t = 1; clamped above 0 so that the gradient of
    # (1 - p_t)^gamma stays finite for 0 < gamma < 1 when p_t rounds to 1.
    one_minus_p = (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)
    return -one_minus_p.pow(gamma) * logp


@register_method("focal")
class Focal(Method):
    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        return focal_loss_per_sample(logits, targets, self.cfg.focal_gamma)
