"""Meta Feature Modulator (Wang et al., arXiv:2008.03428), as this project reconstructs it.

Modulation parameters φ scale (and shift) intermediate features on training forwards; φ is
learned online from a balanced meta set through a one-step virtual update of the network
(mfm.meta.bilevel), in the manner of Meta-Weight-Net. See docs/METHOD.md for the equations and
which choices are ours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mfm.atomic import save_atomic, write_json_atomic
from mfm.config import Config, MfmConfig
from mfm.meta.bilevel import LossFn, Params, bilevel_update, functional_forward
from mfm.meta.modulation import ModContext, Modulator, site_selection
from mfm.models.registry import classifier_module
from mfm.models.sites import ModulationSite, list_sites, set_modulation

from ._meta import MetaMethod
from .base import log_prior
from .registry import register_method
from .transfer import (
    DESCRIPTION_FILE,
    MODULATOR_FILE,
    MODULATOR_KIND,
    ModulatorFileError,
    check_transfer,
    file_description,
)

__all__ = ["MetaFeatureModulator", "ModulatorFileError", "check_transfer", "expected_describe",
           "load_modulator_file", "DESCRIPTION_FILE", "MODULATOR_FILE", "MODULATOR_KIND"]


def load_modulator_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModulatorFileError(f"mfm.modulator_from: {str(p)!r} does not exist") from None
    except Exception as e:  # noqa: BLE001 — any unreadable file gets the same clear message
        raise ModulatorFileError(f"mfm.modulator_from: {str(p)!r} is not a modulator checkpoint "
                                 f"({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("kind") != MODULATOR_KIND:
        raise ModulatorFileError(f"mfm.modulator_from: {str(p)!r} is not a modulator checkpoint "
                                 f"(written by a finished mfm run with mfm.modulator=network)")
    return state


def expected_describe(model_sites: dict[str, tuple[str, int]],
                      opts: MfmConfig) -> dict[str, Any]:
    """What a modulator for this model and these options looks like (Modulator.describe)."""
    return {"sites": site_selection(model_sites, opts.sites), "form": opts.form,
            "source": opts.modulator, "inputs": opts.inputs, "bound": opts.bound,
            "base_loss": opts.base_loss}


@register_method("mfm")
class MetaFeatureModulator(MetaMethod[Modulator]):
    opts: MfmConfig

    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.opts = config.mfm
        self.log_prior = log_prior(self.class_counts)
        # the prior's weight in the loss: balanced softmax 1, la method.la_tau, ce 0
        self.prior_tau = {"balanced_softmax": 1.0, "la": self.cfg.la_tau}.get(
            self.opts.base_loss, 0.0)
        self.ctx = ModContext()
        self.frozen = False
        self.head: nn.Module | None = None

    # -- the loss the modulation acts through ----------------------------------------------------
    def per_sample(self, logits: torch.Tensor, targets: torch.Tensor, *,
                   epoch: int) -> torch.Tensor:
        if self.prior_tau:
            logits = logits + self.prior_tau * self._const("log_prior", self.log_prior, logits)
        return F.cross_entropy(logits, targets, reduction="none")

    # -- set-up --------------------------------------------------------------------------------
    def build(self, model: nn.Module) -> Modulator:
        o = self.opts
        sites = site_selection(list_sites(model), o.sites)
        modulator = Modulator(sites, form=o.form, source=o.modulator, inputs=o.inputs,
                              bound=o.bound, num_classes=self.num_classes,
                              class_counts=self.class_counts, hidden=o.hidden,
                              loss_fn=o.base_loss)
        if o.modulator_from:
            self._load_transfer(modulator, self.resolved_modulator_path())
        self.site_names = frozenset(sites)
        self.head = None  # this model's classifier, found when a modulation first needs it
        set_modulation(model, self._modulate)
        return modulator

    def resolved_modulator_path(self) -> str:
        """``mfm.modulator_from`` as a file path (a run id is resolved by the caller, which
        sets ``modulator_path``)."""
        return self.modulator_path or self.opts.modulator_from

    def _load_transfer(self, modulator: Modulator, path: str) -> None:
        state = load_modulator_file(path)
        check_transfer(state, modulator.describe())
        saved = {k: v for k, v in state["state"].items() if k not in ("log_freq", "log_prior")}
        own = modulator.state_dict()
        for k, v in saved.items():
            if k not in own or own[k].shape != v.shape:
                raise ModulatorFileError(
                    f"mfm.modulator_from: parameter {k} has shape {tuple(v.shape)} in the file, "
                    f"{tuple(own[k].shape) if k in own else 'none'} here (was it saved with "
                    f"another mfm.hidden?)")
        modulator.load_state_dict(saved, strict=False)
        if self.opts.freeze_modulator:
            for p in modulator.parameters():
                p.requires_grad_(False)
            self.frozen = True

    def _modulate(self, site: ModulationSite, x: torch.Tensor) -> torch.Tensor:
        if site.name not in self.site_names:
            return x
        ctx = self.ctx
        if site.training:
            if not ctx.active:
                return x
        elif self.opts.apply != "everywhere":
            return x
        else:
            ctx = ModContext(active=True, detach=True)
        assert self.meta_module is not None and self.model is not None
        if self.head is None:  # the model's declared classifier, looked up once
            self.head = classifier_module(self.model)
        return self.meta_module.modulate(site.name, x, ctx, self.head)

    # -- one iteration ---------------------------------------------------------------------------
    def closures(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, xm: torch.Tensor,
                 ym: torch.Tensor, *, epoch: int, record: bool = False
                 ) -> tuple[LossFn, LossFn, Callable[[], torch.Tensor] | None, ModContext]:
        """L_tr(params, buffers), L_meta(params, buffers) and the regulariser, as used by the
        bilevel step (and by the hypergradient test)."""
        o = self.opts
        vctx = ModContext(active=True, y=y, record=record)

        def train_loss(params: Params, buffers: Params) -> torch.Tensor:
            self.ctx = vctx
            try:
                return self.loss(functional_forward(model, params, buffers, x), y, epoch=epoch)
            finally:
                self.ctx = ModContext()

        def meta_loss(params: Params, buffers: Params) -> torch.Tensor:
            # apply=train: the meta forward is the plain network; everywhere: modulated
            # (label-free sources only, which validation guarantees).
            self.ctx = ModContext(active=o.apply == "everywhere")
            try:
                return self.meta_objective(functional_forward(model, params, buffers, xm), ym)
            finally:
                self.ctx = ModContext()

        def regulariser() -> torch.Tensor:
            return o.reg * torch.stack(vctx.penalty).sum()

        return train_loss, meta_loss, (regulariser if o.reg > 0 else None), vctx

    def virtual_sgd(self, model: nn.Module, optimizer: torch.optim.Optimizer
                    ) -> tuple[float, float, bool, dict[str, torch.Tensor] | None]:
        """(weight decay, momentum, nesterov, momentum buffers by name) of the virtual step.
        ``mfm.virtual_step=sgd``: plain SGD, weight decay as ``mfm.virtual_weight_decay`` says.
        ``mirror``: the real optimiser's own settings (torch SGD, dampening 0, as the engine
        builds it) and its current momentum buffers of the virtually stepped parameters (none
        before its first step)."""
        if self.opts.virtual_step != "mirror":
            return self.virtual_decay(), 0.0, False, None
        group = optimizer.param_groups[0]
        if (not isinstance(optimizer, torch.optim.SGD) or len(optimizer.param_groups) != 1
                or group["dampening"] or group["maximize"]):
            raise ValueError("mfm.virtual_step=mirror mirrors a one-group torch.optim.SGD "
                             f"without dampening (got {type(optimizer).__name__})")
        momentum = float(group["momentum"])
        bufs: dict[str, torch.Tensor] = {}
        if momentum:
            stepped = set(self.virtual_names)
            for n, p in model.named_parameters():
                buf = optimizer.state[p].get("momentum_buffer") if p in optimizer.state else None
                if n in stepped and buf is not None:
                    bufs[n] = buf
        return float(group["weight_decay"]), momentum, bool(group["nesterov"]), bufs

    def training_step(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                      x: torch.Tensor, y: torch.Tensor, *, epoch: int,
                      step: int) -> dict[str, torch.Tensor]:
        o = self.opts
        record = self.is_record_step(step)
        meta = self.is_meta_step(epoch, step) and not self.frozen
        stats: dict[str, torch.Tensor] = {}
        if meta:
            lr = optimizer.param_groups[0]["lr"]
            self.set_meta_lr(lr)
            xm, ym = self.sample_meta_batch()
            train_loss, meta_loss, reg, vctx = self.closures(
                model, x, y, xm, ym, epoch=epoch, record=record and o.reuse_virtual_grads)
            assert self.meta_optimizer is not None  # is_meta_step checked it
            wd, momentum, nesterov, bufs = self.virtual_sgd(model, optimizer)
            res = bilevel_update(model, names=self.virtual_names, train_loss=train_loss,
                                 meta_loss=meta_loss, lr=lr, meta_params=self.meta_params,
                                 meta_optimizer=self.meta_optimizer, weight_decay=wd,
                                 regulariser=reg, momentum=momentum, nesterov=nesterov,
                                 momentum_buffers=bufs)
            self.last_meta_loss = res.meta_loss
            stats = vctx.stats
        if meta and o.reuse_virtual_grads:
            # APPROXIMATION (explicit option): the real step uses ∇_w L_tr(w; φ_before).
            optimizer.zero_grad(set_to_none=True)
            for n, p in model.named_parameters():
                p.grad = res.virtual_grads[n]
            with torch.no_grad():
                for n, b in model.named_buffers():
                    b.copy_(res.virtual_buffers[n])
            optimizer.step()
            loss = res.virtual_loss
        else:
            passes: list[ModContext] = []

            def closure() -> torch.Tensor:
                # the first pass records the modulation's statistics; SAM's second does not
                self.ctx = ModContext(active=True, y=y, detach=True,
                                      record=record and not passes)
                passes.append(self.ctx)
                return self.terms(model(x), y, epoch=epoch)

            try:
                loss = self.real_step(model, optimizer, closure, y)
                stats = passes[0].stats or stats
            finally:
                self.ctx = ModContext()
        return self.outputs(loss, stats)

    # -- transfer --------------------------------------------------------------------------------
    def on_fit_end(self, checkpoint_dir: Path | None) -> None:
        """A finished run with a modulator network saves it for transfer: ``modulator.pt`` and,
        written after it, its description ``modulator.json`` (read when a transfer is queued)."""
        if checkpoint_dir is None or self.opts.modulator != "network" or self.meta_module is None:
            return
        describe = self.meta_module.describe()
        save_atomic({"kind": MODULATOR_KIND, "describe": describe, "hidden": self.opts.hidden,
                     "state": {k: v.cpu() for k, v in self.meta_module.state_dict().items()}},
                    Path(checkpoint_dir) / MODULATOR_FILE)
        write_json_atomic(file_description(describe, model=self.config.model.name,
                                           sites=self.opts.sites, hidden=self.opts.hidden,
                                           num_classes=self.num_classes),
                          Path(checkpoint_dir) / DESCRIPTION_FILE)
