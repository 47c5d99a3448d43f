"""Modulation sites: named identity points in a network where features can be modulated.

A :class:`ModulationSite` returns its input unchanged until a modulation function is set with
:func:`set_modulation`; then it returns ``fn(site, x)``. The function is a plain Python attribute,
not a submodule, so it never appears in ``parameters()`` or ``state_dict()`` and the network can be
called through ``torch.func.functional_call`` with or without it.

Kinds (see docs/METHOD.md): ``"bn"`` after a BatchNorm inside a residual block (before the ReLU /
residual add), ``"stage"`` on a residual stage's output, ``"penultimate"`` on the pooled feature
fed to the classifier (shape ``(N, C)``; the others are ``(N, C, H, W)``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ModulationFn", "ModulationSite", "SITE_KINDS", "list_sites", "set_modulation"]

SITE_KINDS = ("bn", "stage", "penultimate")

ModulationFn = Callable[["ModulationSite", torch.Tensor], torch.Tensor]


class ModulationSite(nn.Module):
    """Identity unless a modulation function is set; then ``forward(x) = fn(self, x)``."""

    fn: ModulationFn | None  # a plain attribute (set with object.__setattr__), not a submodule

    def __init__(self, name: str, kind: str, channels: int):
        super().__init__()
        if kind not in SITE_KINDS:
            raise ValueError(f"site kind must be one of {' | '.join(SITE_KINDS)} (got {kind!r})")
        self.name = name
        self.kind = kind
        self.channels = int(channels)
        # object.__setattr__: an nn.Module given as fn must not become a registered submodule.
        object.__setattr__(self, "fn", None)

    def set_fn(self, fn: ModulationFn | None) -> None:
        if fn is not None and not callable(fn):
            raise TypeError(f"modulation function must be callable or None (got {type(fn)!r})")
        object.__setattr__(self, "fn", fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fn = self.fn
        return x if fn is None else fn(self, x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, kind={self.kind!r}, channels={self.channels}"


def set_modulation(module: nn.Module, fn: ModulationFn | None) -> None:
    """Set (or clear, with ``None``) the modulation function of every site in ``module``."""
    for m in module.modules():
        if isinstance(m, ModulationSite):
            m.set_fn(fn)


def list_sites(module: nn.Module) -> dict[str, tuple[str, int]]:
    """Site name -> (kind, channels), in module registration order."""
    return {m.name: (m.kind, m.channels) for m in module.modules()
            if isinstance(m, ModulationSite)}
