"""Logit adjustment (Menon et al., ICLR 2021), as a loss or after training.

``method.la_mode=loss``: the training loss is CE(z + tau log pi, y) with pi the training class
prior and tau = ``method.la_tau``; prediction is argmax z. With tau = 1 this is balanced
softmax's loss (Ren et al. 2020), term for term.

``method.la_mode=posthoc``: training is plain cross-entropy; prediction is argmax(z - tau
log pi). With ``method.tau_select=val`` tau is chosen at every evaluation from
``method.tau_grid`` by validation accuracy (the first best on ties, so the smallest), and the
test split is scored with it (the run records the chosen tau as its ``tau`` metric).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mfm.config import Config

from .base import Method, log_prior
from .registry import register_method

__all__ = ["LogitAdjusted"]


@register_method("la")
class LogitAdjusted(Method):
    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.log_prior = log_prior(self.class_counts)
        self.posthoc = self.cfg.la_mode == "posthoc"
        self.tau = self.cfg.la_tau

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        if not self.posthoc:
            logits = logits + self.cfg.la_tau * self._const("log_prior", self.log_prior, logits)
        return F.cross_entropy(logits, targets, reduction="none")

    def logits_at(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        return logits - tau * self._const("log_prior", self.log_prior, logits)

    def eval_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self.logits_at(logits, self.tau) if self.posthoc else logits

    def tau_choices(self) -> tuple[float, ...] | None:
        if self.posthoc and self.cfg.tau_select == "val":
            return tuple(self.cfg.tau_grid)
        return None

    def set_tau(self, tau: float) -> None:
        self.tau = tau
