"""Meta-Weight-Net (Shu et al., NeurIPS 2019) on the shared virtual-step machinery.

A 1 → hidden → 1 MLP V (ReLU, sigmoid output) maps each sample's loss to a weight.
Virtual step: ŵ = w − α_e ∇_w L_tr with L_tr = mean_i V(ℓ_i; θ) ℓ_i(w); meta step:
θ ← Adam(∇_θ L_meta(ŵ(θ))); real step: weights recomputed with the updated θ, held constant,
normalised by their sum: L = Σ_i ℓ_i · v_i / Σ_j v_j — as in the authors' official code.
With ``method.reweight`` on, v_i is V's weight times the class weight of y_i before that
normalisation; the real step is ``optim.sam``'s (plain, SAM or ImbSAM), the virtual step plain
SGD.

Four choices differ from the official class-imbalance code
(xjtushujun/Meta-weight-net_class-imbalance); each is a key, ours by default, and
``mwnet.preset=official`` takes all of the official ones (docs/METHOD.md):

- ``mwnet.meta_optimizer`` adam | sgd (official: SGD, lr 1e-5, momentum 0.9, Nesterov,
  weight decay 5e-4; ``meta_momentum``, ``meta_nesterov`` apply to sgd only);
- ``mwnet.virtual_weighting`` mean | normalized (official: L_tr = Σ_i V(ℓ_i) ℓ_i / Σ_j V(ℓ_j),
  the denominator differentiable, as the real step's weights);
- ``mwnet.detach_virtual_loss`` true | false (official: V sees ℓ(w) itself in the virtual step,
  so ∇_w also flows through V(ℓ(w)); the real step always feeds V the detached loss);
- ``mwnet.lr_lead_epochs`` 0 (official: 1 — the real optimiser's schedule runs one epoch ahead:
  in epoch e the real step uses the schedule's lr of e + 1, the virtual step α_e that of e).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mfm.config import Config, MwnetConfig
from mfm.meta.bilevel import LossFn, Params, bilevel_update, functional_forward
from mfm.schedule import lr_factor, milestone_epochs

from ._meta import MetaMethod
from .registry import register_method

__all__ = ["MetaWeightNet", "WeightNet"]


class WeightNet(nn.Module):
    """V: per-sample losses (N,) -> weights in (0, 1). Takes the losses as given: the caller
    detaches them or not (``mwnet.detach_virtual_loss``)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(losses.unsqueeze(1))).squeeze(1)


def normalise(weights: torch.Tensor) -> torch.Tensor:
    """weights / Σ weights (differentiable in the sum), or the weights as they are when the sum
    is 0 — the official code's rule."""
    total = weights.sum()
    return torch.where(total > 0, weights / total.clamp(min=1e-12), weights)


@register_method("mwnet")
class MetaWeightNet(MetaMethod[WeightNet]):
    opts: MwnetConfig

    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.opts = config.mwnet
        self.lr_lead_epochs = self.opts.lr_lead_epochs

    def build(self, model: nn.Module) -> WeightNet:
        return WeightNet(self.opts.hidden)

    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none")

    def closures(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, xm: torch.Tensor,
                 ym: torch.Tensor) -> tuple[LossFn, LossFn]:
        """L_tr(params, buffers) = mean_i V(ℓ_i) ℓ_i (``virtual_weighting=mean``) or
        Σ_i V(ℓ_i) ℓ_i / Σ_j V(ℓ_j) (``normalized``), V fed the detached ℓ or ℓ(w) itself
        (``detach_virtual_loss``); and L_meta(params, buffers)."""
        vnet = self.meta_module
        assert vnet is not None
        detach = self.opts.detach_virtual_loss
        normalized = self.opts.virtual_weighting == "normalized"

        def train_loss(params: Params, buffers: Params) -> torch.Tensor:
            cost = F.cross_entropy(functional_forward(model, params, buffers, x), y,
                                   reduction="none")
            weights: torch.Tensor = vnet(cost.detach() if detach else cost)
            if normalized:
                return (cost * normalise(weights)).sum()
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
            lr = self.virtual_lr(optimizer, epoch)
            self.set_meta_lr(lr)
            xm, ym = self.sample_meta_batch()
            train_loss, meta_loss = self.closures(model, x, y, xm, ym)
            assert self.meta_optimizer is not None  # is_meta_step checked it
            res = bilevel_update(model, names=self.virtual_names, train_loss=train_loss,
                                 meta_loss=meta_loss, lr=lr, meta_params=self.meta_params,
                                 meta_optimizer=self.meta_optimizer,
                                 weight_decay=self.virtual_decay())
            self.last_meta_loss = res.meta_loss
        first: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            cost = F.cross_entropy(model(x), y, reduction="none")
            with torch.no_grad():
                raw = vnet(cost.detach())
                w = raw
                if self.reweighting(epoch):  # method.reweight: class weights times V's
                    w = w * self._const("reweight", self.class_weights, raw)[y]
                w = normalise(w)
            if not first:  # the real step's first pass is what the run reports
                first.update(cost=cost.detach(), raw=raw)
            return cost * w

        self.real_step(model, optimizer, closure, y)
        extra: dict[str, torch.Tensor] = {}
        if self.is_record_step(step):
            raw = first["raw"]
            extra = {"weight_mean": raw.mean(), "weight_std": raw.std(unbiased=False)}
        return self.outputs(first["cost"].mean(), extra)

    def virtual_lr(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        """α_e of the virtual step in ``epoch``: the optimiser's lr, or with
        ``lr_lead_epochs`` > 0 (the optimiser then runs that far ahead) the schedule's lr of
        ``epoch`` itself, computed as the engine's scheduler does (optim.lr × lr_factor)."""
        if not self.lr_lead_epochs:
            lr: float = optimizer.param_groups[0]["lr"]
            return lr
        o = self.config.optim
        return o.lr * lr_factor(epoch, warmup_epochs=o.warmup_epochs,
                                milestones=milestone_epochs(o.milestones, self.epochs),
                                decay=o.lr_decay, schedule=o.schedule, epochs=self.epochs)
