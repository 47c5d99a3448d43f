"""Balanced softmax (Ren et al., NeurIPS 2020): cross-entropy of logits + log prior.

Training loss CE(z + log pi, y) with pi_c = n_c / sum_n; prediction uses the plain logits z,
which makes the classifier's argmax estimate the balanced (test) posterior.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfm.config import Config

from .base import Method, log_prior
from .registry import register_method


@register_method("balanced_softmax")
class BalancedSoftmax(Method):
    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.log_prior = log_prior(self.class_counts)

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        return F.cross_entropy(logits + self._const("log_prior", self.log_prior, logits),
                               targets, reduction="none")
