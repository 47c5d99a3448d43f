"""Meta-Weight-Net (Shu et al., NeurIPS 2019) on the shared virtual-step machinery.

A 1 → hidden → 1 MLP (ReLU, sigmoid output) maps each sample's detached loss to a weight.
Virtual step: L_tr = mean_i V(ℓ_i; θ) ℓ_i(w); meta step: θ ← Adam(∇_θ L_meta(ŵ(θ))); real step:
weights recomputed with the updated θ, held constant, normalised by their sum:
L = Σ_i ℓ_i · v_i / Σ_j v_j — as in the authors' official code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mfm.config import Config, MwnetConfig
from mfm.meta.bilevel import LossFn, Params, bilevel_update, functional_forward

from ._meta import MetaMethod
from .registry import register_method

__all__ = ["MetaWeightNet", "WeightNet"]


class WeightNet(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(losses.detach().unsqueeze(1))).squeeze(1)


@register_method("mwnet")
class MetaWeightNet(MetaMethod[WeightNet]):
    opts: MwnetConfig

    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.opts = config.mwnet

    def build(self, model: nn.Module) -> WeightNet:
        return WeightNet(self.opts.hidden)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, *, epoch: int) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    def closures(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, xm: torch.Tensor,
                 ym: torch.Tensor) -> tuple[LossFn, LossFn]:
        """L_tr(params, buffers) = mean_i V(ℓ_i) ℓ_i and L_meta(params, buffers)."""
        vnet = self.meta_module
        assert vnet is not None

        def train_loss(params: Params, buffers: Params) -> torch.Tensor:
            cost = F.cross_entropy(functional_forward(model, params, buffers, x), y,
                                   reduction="none")
            weights: torch.Tensor = vnet(cost)
            return (cost * weights).mean()

        def meta_loss(params: Params, buffers: Params) -> torch.Tensor:
            return self.meta_objective(functional_forward(model, params, buffers, xm), ym)

        return train_loss, meta_loss

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                      x: torch.Tensor, y: torch.Tensor, *, epoch: int,
                      step: int) -> dict[str, torch.Tensor]:
        vnet = self.meta_module
        assert vnet is not None
        if self.is_meta_step(epoch, step):
            lr = optimizer.param_groups[0]["lr"]
            self.set_meta_lr(lr)
            xm, ym = self.sample_meta_batch()
            train_loss, meta_loss = self.closures(model, x, y, xm, ym)
            assert self.meta_optimizer is not None  # is_meta_step checked it
            res = bilevel_update(model, names=self.virtual_names, train_loss=train_loss,
                                 meta_loss=meta_loss, lr=lr, meta_params=self.meta_params,
                                 meta_optimizer=self.meta_optimizer,
                                 weight_decay=self.virtual_decay())
            self.last_meta_loss = res.meta_loss
        optimizer.zero_grad(set_to_none=True)
        cost = F.cross_entropy(model(x), y, reduction="none")
        with torch.no_grad():
            raw = vnet(cost)
            total = raw.sum()
            w = torch.where(total > 0, raw / total.clamp(min=1e-12), raw)
        loss = (cost * w).sum()
        torch.autograd.backward(loss)  # loss.backward(), which torch leaves unannotated
        optimizer.step()
        extra: dict[str, torch.Tensor] = {}
        if self.is_record_step(step):
            extra = {"weight_mean": raw.mean(), "weight_std": raw.std(unbiased=False)}
        return self.outputs(cost.detach().mean(), extra)
