"""tau-normalisation (Kang et al., ICLR 2020; facebookresearch/classifier-balancing): a
stage-2 run that trains nothing. It starts from a parent run's network (``train.init_from``)
and predicts with each classifier row rescaled, w_c / |w_c|^tau (tau = ``method.norm_tau``, or
chosen on the validation split with ``method.tau_select=val``). The bias is kept, as in
ShadeAlsha/LTR-weight-balancing's utils/regularizers.py (Normalizer), so the logits are
(z_c - b_c) / |w_c|^tau + b_c, computed from the plain logits z without touching the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mfm.config import Config
from mfm.models.registry import classifier_module

from .base import Method
from .registry import register_method

__all__ = ["TauNorm"]


@register_method("tau_norm")
class TauNorm(Method):
    trains = False

    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.tau = self.cfg.norm_tau
        self.head: nn.Linear | None = None

    def attach(self, *, model: nn.Module, meta_x: torch.Tensor, meta_y: torch.Tensor,
               device: torch.device, **options: Any) -> None:
        head = classifier_module(model)
        if not isinstance(head, nn.Linear):
            raise ValueError(f"tau_norm needs a linear classifier (one weight row per class); "
                             f"this model's is a {type(head).__name__}")
        self.head = head

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        raise RuntimeError("tau_norm trains nothing: it has no training loss")

    def logits_at(self, logits: torch.Tensor, tau: float) -> torch.Tensor:
        assert self.head is not None, "attach() first"
        weight = self.head.weight
        bias = self.head.bias
        norms = torch.linalg.vector_norm(weight.detach(), dim=1).to(logits.dtype)
        b = bias.detach().to(logits.dtype) if isinstance(bias, torch.Tensor) else None
        z = logits - b if b is not None else logits
        scaled: torch.Tensor = z / norms.pow(tau)
        return scaled + b if b is not None else scaled

    def eval_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return self.logits_at(logits, self.tau)

    def tau_choices(self) -> tuple[float, ...] | None:
        return tuple(self.cfg.tau_grid) if self.cfg.tau_select == "val" else None

    def set_tau(self, tau: float) -> None:
        self.tau = tau
