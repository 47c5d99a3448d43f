"""The real optimiser step, plain or sharpness-aware, around a method's loss.

A method hands the step a *closure*: a forward pass returning the per-sample **terms** of its
training loss, a tensor (N,) whose sum is the loss (``l_i / N`` for a plain mean; ``w_i l_i /
sum_j w_j`` for a weighted one), computed with the graph. The step calls it once (plain) or
twice (SAM, ImbSAM) and steps the optimiser; it returns the first pass's loss, detached.

- :class:`PlainStep`: ``g = grad L(w)``, optimiser step with g.
- :class:`SamStep` (Foret et al., ICLR 2021): ``e = rho g / |g|`` over every parameter with
  a gradient (one global L2 norm, + 1e-16 as cool-xuan/Imbalanced_SAM's imbsam.py), the
  gradient taken again at ``w + e``, ``w`` restored, optimiser step with that gradient.
  Both passes are training-mode forwards (BatchNorm statistics move twice, as in
  val-iisc/Saddle-LongTail's cifar_train_sam.py).
- :class:`ImbSamStep` (Zhou et al., ICCV 2023; cool-xuan/Imbalanced_SAM, imbsam.py and
  utils/trainval.py): the batch's terms split by class into head (classes with at least
  ``optim.imbsam_threshold`` training images) and tail. ``g_head = grad L_head(w)``; ``e =
  rho g_tail / |g_tail|`` from the tail terms only; the step uses ``g_head(w) + g_tail(w +
  e)``: only the tail loss is perturbed. A batch without tail samples is a plain step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import nn

__all__ = ["Closure", "RealStep", "PlainStep", "SamStep", "ImbSamStep", "make_step",
           "tail_classes"]

# A forward pass returning the per-sample terms (N,) of the training loss (their sum is it).
Closure = Callable[[], torch.Tensor]
_EPS = 1e-16


class RealStep(Protocol):
    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, closure: Closure,
                 targets: torch.Tensor) -> torch.Tensor: ...


def _backward(loss: torch.Tensor, *, retain: bool = False) -> None:
    torch.autograd.backward(loss, retain_graph=retain)  # loss.backward(), unannotated in torch


class PlainStep:
    """Zero the gradients, one forward and backward, one optimiser step."""

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, closure: Closure,
                 targets: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = closure().sum()
        _backward(loss)
        optimizer.step()
        return loss.detach()


def _with_grad(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.grad is not None]


@torch.no_grad()
def _ascend(params: Sequence[torch.nn.Parameter], rho: float) -> list[torch.Tensor]:
    """Move every parameter by ``e = rho g / (|g| + 1e-16)`` (g: their current gradients, one
    global L2 norm); returns the e's, to undo the move."""
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in params if p.grad is not None]))
    scale = rho / (norm + _EPS)
    moves = []
    for p in params:
        assert p.grad is not None
        e = p.grad * scale
        p.add_(e)
        moves.append(e)
    return moves


@torch.no_grad()
def _restore(params: Sequence[torch.nn.Parameter], moves: Sequence[torch.Tensor]) -> None:
    for p, e in zip(params, moves, strict=True):
        p.sub_(e)


class SamStep:
    """Sharpness-aware minimisation around the optimiser's step."""

    def __init__(self, rho: float):
        if not rho > 0:
            raise ValueError(f"optim.sam_rho must be > 0 (got {rho})")
        self.rho = rho

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, closure: Closure,
                 targets: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = closure().sum()
        _backward(loss)
        params = _with_grad(model)
        moves = _ascend(params, self.rho)
        optimizer.zero_grad(set_to_none=True)
        _backward(closure().sum())
        _restore(params, moves)
        optimizer.step()
        return loss.detach()


class ImbSamStep:
    """ImbSAM: only the tail classes' loss is taken at the perturbed weights."""

    def __init__(self, rho: float, is_tail: Sequence[bool]):
        if not rho > 0:
            raise ValueError(f"optim.sam_rho must be > 0 (got {rho})")
        self.rho = rho
        self.is_tail = list(is_tail)
        self._mask: dict[torch.device, torch.Tensor] = {}

    def _tail(self, targets: torch.Tensor) -> torch.Tensor:
        mask = self._mask.get(targets.device)
        if mask is None:
            mask = torch.tensor(self.is_tail, dtype=torch.bool, device=targets.device)
            self._mask[targets.device] = mask
        return mask[targets]

    def __call__(self, model: nn.Module, optimizer: torch.optim.Optimizer, closure: Closure,
                 targets: torch.Tensor) -> torch.Tensor:
        tail = self._tail(targets)
        optimizer.zero_grad(set_to_none=True)
        terms = closure()
        loss = terms.sum()
        if not bool(tail.any()):
            _backward(loss)
            optimizer.step()
            return loss.detach()
        _backward(terms[~tail].sum(), retain=True)
        head_grads = {p: p.grad.clone() for p in model.parameters() if p.grad is not None}
        optimizer.zero_grad(set_to_none=True)
        _backward(terms[tail].sum())
        params = _with_grad(model)
        moves = _ascend(params, self.rho)
        optimizer.zero_grad(set_to_none=True)
        _backward(closure()[tail].sum())
        _restore(params, moves)
        with torch.no_grad():
            for p, g in head_grads.items():
                if p.grad is None:
                    p.grad = g
                else:
                    p.grad.add_(g)
        optimizer.step()
        return loss.detach()


def tail_classes(class_counts: Sequence[int], threshold: int) -> list[bool]:
    """ImbSAM's tail: the classes with fewer than ``threshold`` training images."""
    return [n < threshold for n in class_counts]


def make_step(kind: str, *, rho: float = 0.05, class_counts: Sequence[int] = (),
              threshold: int = 100) -> RealStep:
    """The step ``optim.sam`` names: none | sam | imbsam."""
    if kind == "none":
        return PlainStep()
    if kind == "sam":
        return SamStep(rho)
    if kind == "imbsam":
        return ImbSamStep(rho, tail_classes(class_counts, threshold))
    raise ValueError(f"optim.sam must be one of none | sam | imbsam (got {kind!r})")
