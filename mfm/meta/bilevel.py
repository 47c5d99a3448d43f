"""The virtual step and meta update shared by MFM and Meta-Weight-Net.

One online bilevel iteration (METHOD.md, "One iteration"):

1. ŵ = w − α_t (∇_w L_tr(w; φ) [+ λ w])   with the graph kept (create_graph=True)
   (or, with momentum, the real SGD's step from its current momentum buffers: ``virtual_step``),
2. L_meta(ŵ) on the balanced meta batch,
3. φ ← meta optimiser step with ∇_φ (L_meta + reg).

Everything runs through ``torch.func.functional_call`` on explicit parameter dicts and on
*copies* of the buffers, so the real model's BatchNorm running statistics are untouched. The
meta-gradient is taken with ``torch.autograd.grad(..., inputs=φ)``: only with respect to what
is updated, and nothing accumulates into the network's ``.grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from mfm.models.registry import UndeclaredParams, declared_params

__all__ = ["VIRTUAL_PARAMS", "select_virtual", "BilevelResult", "virtual_step", "bilevel_update",
           "buffer_copies"]

VIRTUAL_PARAMS = ("all", "last_stage", "fc")

Params = dict[str, torch.Tensor]
# (params, buffers) -> scalar loss; the callable runs the functional forward itself.
LossFn = Callable[[Params, Params], torch.Tensor]


def select_virtual(model: nn.Module, which: str, *, key: str = "mfm.virtual_params") -> list[str]:
    """Names of the parameters the virtual step updates, in ``named_parameters()`` order: every
    parameter (``all``), the model's declared last stage and classifier (``last_stage``), or
    only its classifier (``fc``). The groups are what the model declares
    (:func:`mfm.models.declared_params`); ``key`` names the setting in errors."""
    if which not in VIRTUAL_PARAMS:
        raise ValueError(f"{key} must be one of {' | '.join(VIRTUAL_PARAMS)} (got {which!r})")
    names = [n for n, _ in model.named_parameters()]
    if which == "all":
        return names
    groups = ("last_stage", "classifier") if which == "last_stage" else ("classifier",)
    try:
        chosen = {n for g in groups for n in declared_params(model, g)}
    except UndeclaredParams as e:
        raise ValueError(f"{key}={which} needs the model's {e.group} parameters, but {e}; "
                         f"set {key} to one of {' | '.join(VIRTUAL_PARAMS)} that it supports "
                         f"(all always works)") from None
    return [n for n in names if n in chosen]


def buffer_copies(model: nn.Module) -> Params:
    """Fresh copies of the model's buffers, so functional forwards in train mode update these
    and not the real running statistics."""
    return {n: b.clone() for n, b in model.named_buffers()}


@dataclass
class BilevelResult:
    virtual_loss: torch.Tensor  # L_tr(w; φ) of the virtual forward (detached)
    meta_loss: torch.Tensor  # L_meta(ŵ) (detached)
    virtual_grads: dict[str, torch.Tensor]  # ∇_w L_tr at w (detached), for reuse_virtual_grads
    virtual_buffers: Params  # the buffers after the virtual forward (train-mode BN updates)


def virtual_step(params: Params, buffers: Params, train_loss: LossFn, lr: float,
                 names: Sequence[str], weight_decay: float = 0.0, *, momentum: float = 0.0,
                 nesterov: bool = False, momentum_buffers: Mapping[str, torch.Tensor] | None = None
                 ) -> tuple[Params, torch.Tensor, tuple[torch.Tensor, ...]]:
    """ŵ = w − lr (∇_w L_tr + weight_decay · w) on ``names``, as a differentiable function of
    whatever L_tr depends on (the modulation φ). Plain SGD: no momentum (METHOD.md step 1).

    With ``momentum`` μ > 0 the step is torch.optim.SGD's (dampening 0), differentiable in the
    gradient: g' = g + weight_decay · w, buf' = μ · buf + g' with buf =
    ``momentum_buffers[n]`` taken as a constant (absent: the optimiser's first step, buf' = g'),
    direction d = g' + μ · buf' (``nesterov``) or buf', and ŵ = w − lr · d."""
    loss = train_loss(params, buffers)
    grads = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
    updated = dict(params)
    bufs = momentum_buffers or {}
    for n, g in zip(names, grads):
        p = params[n]
        if not momentum:
            updated[n] = p - lr * (g + weight_decay * p) if weight_decay else p - lr * g
            continue
        d = g + weight_decay * p if weight_decay else g
        buf = bufs.get(n)
        new_buf = d if buf is None else momentum * buf.detach() + d
        updated[n] = p - lr * (d + momentum * new_buf if nesterov else new_buf)
    return updated, loss, grads


def bilevel_update(model: nn.Module, *, names: Sequence[str], train_loss: LossFn,
                   meta_loss: LossFn, lr: float, meta_params: Sequence[torch.Tensor],
                   meta_optimizer: torch.optim.Optimizer, weight_decay: float = 0.0,
                   regulariser: Callable[[], torch.Tensor] | None = None, momentum: float = 0.0,
                   nesterov: bool = False,
                   momentum_buffers: Mapping[str, torch.Tensor] | None = None) -> BilevelResult:
    """Steps 1-3 of the iteration. The network's parameters and buffers are not changed.
    ``momentum``, ``nesterov``, ``momentum_buffers``: see ``virtual_step`` (default: plain
    SGD)."""
    params: Params = dict(model.named_parameters())
    vbuffers = buffer_copies(model)
    updated, vloss, grads = virtual_step(params, vbuffers, train_loss, lr, names, weight_decay,
                                         momentum=momentum, nesterov=nesterov,
                                         momentum_buffers=momentum_buffers)
    mloss = meta_loss(updated, buffer_copies(model))
    objective = mloss if regulariser is None else mloss + regulariser()
    meta_grads = torch.autograd.grad(objective, list(meta_params), allow_unused=True)
    meta_optimizer.zero_grad(set_to_none=True)
    for p, g in zip(meta_params, meta_grads):
        p.grad = None if g is None else g.detach()
    meta_optimizer.step()
    return BilevelResult(virtual_loss=vloss.detach(), meta_loss=mloss.detach(),
                         virtual_grads={n: g.detach() for n, g in zip(names, grads)},
                         virtual_buffers=vbuffers)


def functional_forward(model: nn.Module, params: Params, buffers: Params,
                       x: torch.Tensor) -> torch.Tensor:
    """The model's forward with the given parameters and buffers (``functional_call``)."""
    out: torch.Tensor = functional_call(model, (params, buffers), (x,), strict=False)
    return out
