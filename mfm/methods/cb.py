"""Class-balanced loss (Cui et al., CVPR 2019): re-weighting by the effective number of samples.

Effective number E_n = (1 - beta^n) / (1 - beta); class weight w_c = 1 / E_{n_c} =
(1 - beta) / (1 - beta^{n_c}), normalised so that sum_c w_c = C (the number of classes).
beta = ``method.cb_beta`` (0.9999); beta = 0 gives w_c = 1 (plain loss), beta -> 1 approaches
inverse-frequency weights.

Reduction convention: loss = (1/N) * sum_i w_{y_i} * l_i, the per-sample mean of Cui et al.'s
formula CB(p, y) = w_y * L(p, y) over the batch, with l = cross-entropy or softmax focal loss
(``method.cb_loss``; focal uses ``method.focal_gamma``). This is *not* torch's
``F.cross_entropy(weight=w)``, which divides by sum_i w_{y_i} instead of N (LDAM-DRW uses that
one, as Cao et al.'s code does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfm.config import Config

from .base import Method
from .focal import focal_loss_per_sample
from .registry import register_method

__all__ = ["ClassBalanced", "class_balanced_weights"]


def class_balanced_weights(class_counts: Sequence[int], beta: float) -> list[float]:
    """w_c = (1 - beta) / (1 - beta^{n_c}), normalised to sum to the number of classes."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1) (got {beta})")
    raw = [(1.0 - beta) / (1.0 - beta ** n) for n in class_counts]
    total = sum(raw)
    return [w * len(raw) / total for w in raw]


@register_method("cb")
class ClassBalanced(Method):
    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.class_weights = class_balanced_weights(self.class_counts, self.cfg.cb_beta)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        if self.cfg.cb_loss == "focal":
            per = focal_loss_per_sample(logits, targets, self.cfg.focal_gamma)
        else:
            per = F.cross_entropy(logits, targets, reduction="none")
        w = self._const("cb", self.class_weights, logits)
        return (w[targets] * per).mean()
