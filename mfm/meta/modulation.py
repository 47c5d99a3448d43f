"""Modulation parameters φ and how they act on features (METHOD.md, "Choices").

At a site with feature h (N, C[, H, W]):  h̃ = γ ⊙ h (+ β), with
  form=scale:        γ = exp(bound · tanh(u))          (identity at u = 0)
  form=scale_shift:  γ = 1 + bound · tanh(u), β = bound · tanh(v)
and (u, v) from one of three sources:
  free            one vector per site, shared by all samples,
  free_per_class  one vector per site and class, indexed by the training label,
  network         a small MLP per site (last layer zero-initialised), per sample, fed either
                  (detached loss, log n_y/n_max) [loss_freq] — then it outputs ONE scale per
                  sample, broadcast over the channels, so the same network fits any backbone
                  and dataset (a learned per-sample temperature) — or the site's detached,
                  channel-pooled feature [features], with one value per channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Modulator", "ModContext", "site_selection"]


def site_selection(all_sites: dict[str, tuple[str, int]], sites: str) -> dict[str, int]:
    """Site name -> channels for the chosen kind, in forward order."""
    chosen = {n: c for n, (kind, c) in all_sites.items() if kind == sites}
    if not chosen:
        raise ValueError(f"the model has no {sites!r} modulation sites")
    return chosen


def _key(site: str) -> str:
    return site.replace(".", "_")


@dataclass
class ModContext:
    """Per-forward state the modulation reads: which forward this is and the labels."""

    active: bool = False  # modulate this (train-mode) forward at all
    y: torch.Tensor | None = None  # training labels (label-dependent sources)
    detach: bool = False  # real step: φ held constant
    record: bool = False  # keep γ/β statistics of this forward
    penalty: list[torch.Tensor] = field(default_factory=list)  # Σ mean(u²)+mean(v²) per site
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Modulator(nn.Module):
    """Holds φ for the chosen sites and applies the modulation."""

    log_freq: torch.Tensor  # buffers (register_buffer in __init__)
    log_prior: torch.Tensor

    def __init__(self, sites: dict[str, int], *, form: str, source: str, inputs: str,
                 bound: float, num_classes: int, class_counts: Sequence[int], hidden: int = 100,
                 loss_fn: str = "ce"):
        super().__init__()
        self.site_channels = dict(sites)
        # Values per sample the source produces at each site: 1 (broadcast) for loss_freq.
        self.out_channels = {s: 1 if (source == "network" and inputs == "loss_freq") else c
                             for s, c in sites.items()}
        self.form, self.source, self.inputs = form, source, inputs
        self.bound = float(bound)
        self.num_classes = num_classes
        self.loss_fn = loss_fn
        width = 2 if form == "scale_shift" else 1
        n_max = max(class_counts)
        self.register_buffer("log_freq", torch.tensor(
            [math.log(n / n_max) for n in class_counts], dtype=torch.float32))
        self.register_buffer("log_prior", torch.tensor(
            [math.log(n / sum(class_counts)) for n in class_counts], dtype=torch.float32))
        if source == "free":
            self.tables = nn.ParameterDict({_key(s): nn.Parameter(torch.zeros(1, width * c))
                                            for s, c in sites.items()})
        elif source == "free_per_class":
            self.tables = nn.ParameterDict({
                _key(s): nn.Parameter(torch.zeros(num_classes, width * c))
                for s, c in sites.items()})
        elif source == "network":
            nets = {}
            for s, c in sites.items():
                in_dim = 2 if inputs == "loss_freq" else c
                last = nn.Linear(hidden, width * self.out_channels[s])
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
                nets[_key(s)] = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), last)
            self.nets = nn.ModuleDict(nets)
        else:
            raise ValueError(f"unknown modulation source {source!r}")

    def describe(self) -> dict[str, Any]:
        """What a transferred modulator must match."""
        return {"sites": self.site_channels, "form": self.form, "source": self.source,
                "inputs": self.inputs, "bound": self.bound, "base_loss": self.loss_fn}

    # -- φ -> (u, v) ----------------------------------------------------------------------------
    def _raw(self, site: str, x: torch.Tensor, ctx: ModContext, head: nn.Module) -> torch.Tensor:
        k = _key(site)
        if self.source == "free":
            table: torch.Tensor = self.tables[k]
            return table
        if self.source == "free_per_class":
            if ctx.y is None:
                raise RuntimeError("free_per_class modulation needs the training labels")
            per_class: torch.Tensor = self.tables[k]
            return per_class[ctx.y]
        net = self.nets[k]
        if self.inputs == "features":
            feat = x.detach()
            z = feat.mean(dim=(2, 3)) if feat.dim() == 4 else feat
        else:
            if ctx.y is None:
                raise RuntimeError("loss_freq modulation needs the training labels")
            with torch.no_grad():
                logits = head(x.detach())
                if self.loss_fn == "balanced_softmax":
                    logits = logits + self.log_prior.to(logits.dtype)
                loss = F.cross_entropy(logits, ctx.y, reduction="none")
            z = torch.stack([loss, self.log_freq.to(x.dtype)[ctx.y]], dim=1)
        raw: torch.Tensor = net(z.to(x.dtype))
        return raw

    def modulate(self, site: str, x: torch.Tensor, ctx: ModContext,
                 head: nn.Module) -> torch.Tensor:
        if ctx.detach:  # φ held constant: no graph to it (a free table is returned as is)
            with torch.no_grad():
                raw = self._raw(site, x, ctx, head).detach()
        else:
            raw = self._raw(site, x, ctx, head)
        c = self.out_channels[site]
        u = raw[:, :c]
        if self.form == "scale":
            gamma = torch.exp(self.bound * torch.tanh(u))
            beta = None
        else:
            gamma = 1.0 + self.bound * torch.tanh(u)
            v = raw[:, c:]
            beta = self.bound * torch.tanh(v)
        if not ctx.detach:
            pen = u.pow(2).mean() * c
            if beta is not None:
                pen = pen + raw[:, c:].pow(2).mean() * c
            ctx.penalty.append(pen)
        if ctx.record:
            with torch.no_grad():
                ctx.stats[f"mod/{site}/gamma_mean"] = gamma.mean()
                ctx.stats[f"mod/{site}/gamma_std"] = gamma.std(unbiased=False)
                if beta is not None:
                    ctx.stats[f"mod/{site}/beta_mean"] = beta.mean()
                    ctx.stats[f"mod/{site}/beta_std"] = beta.std(unbiased=False)
        shape = (gamma.shape[0], c) + (1,) * (x.dim() - 2)  # c == 1 broadcasts
        out = x * gamma.reshape(shape)
        if beta is not None:
            out = out + beta.reshape(shape)
        return out
