"""LDAM with deferred re-weighting (Cao et al., NeurIPS 2019), as in their official code.

Margins m_j = 1 / n_j^{1/4}, rescaled so that max_j m_j = ``method.ldam_max_margin`` (0.5).
With cosine logits z (``classifier = "cosine"``) the loss is
``F.cross_entropy(s * (z - m_y * onehot(y)), y, weight=w)`` with s = ``method.ldam_scale`` (30).
Deferred re-weighting: w = None before epoch ``floor(drw_start * epochs)`` (0-based; 0.8 of 200
epochs = 160, as Cao's ``epoch // 160``), then the class-balanced weights with beta =
``method.cb_beta`` normalised to sum to C. The weighted mean is torch's (divided by
sum_i w_{y_i}), as in Cao's code. Prediction: plain argmax of the cosine logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfm.config import Config

from .base import Method, class_balanced_weights
from .registry import register_method

__all__ = ["LDAMDRW", "ldam_margins"]


def ldam_margins(class_counts: Sequence[int], max_margin: float) -> list[float]:
    """m_j = n_j^{-1/4}, scaled so the largest (rarest class) equals ``max_margin``."""
    raw = [1.0 / n ** 0.25 for n in class_counts]
    top = max(raw)
    return [m * max_margin / top for m in raw]


@register_method("ldam_drw")
class LDAMDRW(Method):
    classifier = "cosine"

    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.margins = ldam_margins(self.class_counts, self.cfg.ldam_max_margin)
        self.drw_weights = class_balanced_weights(self.class_counts, self.cfg.cb_beta)

    def reweighting(self, epoch: int) -> bool:
        """Whether the deferred class-balanced weights are on at this (0-based) epoch."""
        return epoch >= self.drw_epoch

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        m = self._const("margins", self.margins, logits)
        onehot = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
        z = self.cfg.ldam_scale * (logits - m[targets].unsqueeze(1) * onehot)
        return F.cross_entropy(z, targets, reduction="none")

    def reduce(self, per: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        """torch's weighted mean (Cao's code): w_{y_i} l_i / sum_j w_{y_j} once DRW is on."""
        if self.reweighting(epoch):
            w = self._const("drw", self.drw_weights, per)[targets]
            return per * w / w.sum()
        return per / per.shape[0]
