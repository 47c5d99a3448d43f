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

from .base import Method, class_balanced_weights
from .focal import focal_loss_per_sample
from .registry import register_method

__all__ = ["ClassBalanced", "class_balanced_weights"]


@register_method("cb")
class ClassBalanced(Method):
    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.class_weights = class_balanced_weights(self.class_counts, self.cfg.cb_beta)

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        if self.cfg.cb_loss == "focal":
            return focal_loss_per_sample(logits, targets, self.cfg.focal_gamma)
        return F.cross_entropy(logits, targets, reduction="none")

    def reduce(self, per: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        """Cui et al.'s per-sample mean: w_{y_i} l_i / N (not torch's weighted mean)."""
        w = self._const("cb", self.class_weights, per)
        return w[targets] * per / per.shape[0]
