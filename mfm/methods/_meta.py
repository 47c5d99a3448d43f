"""What Meta-Weight-Net and MFM share: the resident meta set, the meta optimiser and its lr,
the meta-step schedule, and resumable state. The bilevel step itself is mfm.meta.bilevel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from mfm.config import Config
from mfm.meta.bilevel import select_virtual

from .base import Method

__all__ = ["MetaMethod"]

# The kind of module a meta method learns (Meta-Weight-Net's weight net, MFM's modulator).
MetaModule = TypeVar("MetaModule", bound=nn.Module)


class MetaMethod(Method, Generic[MetaModule]):
    """Base of the meta methods. Subclasses build ``self.meta_module`` in ``build`` and
    implement ``training_step``. ``self.opts`` is their config section."""

    opts: Any

    def __init__(self, config: Config, class_counts: Sequence[int]):
        super().__init__(config, class_counts)
        self.base_lr = config.optim.lr
        self.weight_decay = config.optim.weight_decay
        self.meta_batch = config.train.batch_size
        self.log_every = config.train.log_every
        self.last_meta_loss: torch.Tensor | None = None
        self.meta_module: MetaModule | None = None
        self.meta_optimizer: torch.optim.Optimizer | None = None
        self.model: nn.Module | None = None

    # -- set-up by the engine -------------------------------------------------------------------
    def attach(self, *, model: nn.Module, meta_x: torch.Tensor, meta_y: torch.Tensor,
               device: torch.device, modulator_path: str | None = None,
               **options: Any) -> None:
        """Take the model and the device-resident meta set; build φ and its optimiser.
        ``modulator_path``: the resolved file of ``mfm.modulator_from`` (a run id resolved by
        the caller, which knows the records). No other option is taken."""
        if options:
            raise TypeError(f"{type(self).__name__}.attach() got unexpected options "
                            f"{sorted(options)}")
        self.model = model
        self.modulator_path = modulator_path
        self.meta_x, self.meta_y = meta_x, meta_y
        self.device = device
        if self.opts.meta_batch_size:
            self.meta_batch = self.opts.meta_batch_size
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.config.seed + 7919)
        self.virtual_names = select_virtual(model, self.opts.virtual_params,
                                            key=f"{self.name}.virtual_params")
        self.meta_module = self.build(model).to(device)
        params = [p for p in self.meta_module.parameters() if p.requires_grad]
        self.meta_params = params
        if params:
            if getattr(self.opts, "meta_optimizer", "adam") == "sgd":
                # mwnet's section sets momentum and nesterov; mfm's has neither (0.9, plain)
                self.meta_optimizer = torch.optim.SGD(
                    params, lr=self.opts.meta_lr,
                    momentum=getattr(self.opts, "meta_momentum", 0.9),
                    nesterov=getattr(self.opts, "meta_nesterov", False),
                    weight_decay=self.opts.meta_weight_decay)
            else:
                self.meta_optimizer = torch.optim.Adam(params, lr=self.opts.meta_lr,
                                                       weight_decay=self.opts.meta_weight_decay)

    def build(self, model: nn.Module) -> MetaModule:
        raise NotImplementedError

    def set_meta_set(self, meta_x: torch.Tensor, meta_y: torch.Tensor) -> None:
        """Replace the device-resident meta set (a new data.meta_source=resampled draw). The
        meta batch sampler's generator goes on as it was."""
        self.meta_x, self.meta_y = meta_x, meta_y

    # -- helpers for training_step ---------------------------------------------------------------
    def is_meta_step(self, epoch: int, step: int) -> bool:
        start: int = self.opts.meta_start_epoch
        interval: int = self.opts.meta_interval
        return self.meta_optimizer is not None and epoch >= start and step % interval == 0

    def is_record_step(self, step: int) -> bool:
        return (step + 1) % self.log_every == 0

    def set_meta_lr(self, lr: float) -> None:
        assert self.meta_optimizer is not None
        meta_lr = self.opts.meta_lr * (lr / self.base_lr if self.opts.meta_lr_follows_schedule
                                       else 1.0)
        for group in self.meta_optimizer.param_groups:
            group["lr"] = meta_lr

    def sample_meta_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A meta batch from the device-resident meta set (the whole set when it is small)."""
        n = self.meta_y.shape[0]
        if n <= self.meta_batch:
            return self.meta_x, self.meta_y
        idx = torch.randperm(n, device=self.meta_y.device, generator=self.generator)
        idx = idx[: self.meta_batch]
        return self.meta_x[idx], self.meta_y[idx]

    def virtual_decay(self) -> float:
        return self.weight_decay if self.opts.virtual_weight_decay else 0.0

    @staticmethod
    def meta_objective(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L_meta: plain mean cross-entropy on the balanced meta batch."""
        return F.cross_entropy(logits, y)

    def outputs(self, loss: torch.Tensor,
                extra: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {"loss": loss.detach()}
        if self.last_meta_loss is not None:
            out["meta_loss"] = self.last_meta_loss
        out.update(extra)
        return out

    # -- resume ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"generator": self.generator.get_state()}
        if self.meta_module is not None:
            state["meta_module"] = self.meta_module.state_dict()
        if self.meta_optimizer is not None:
            state["meta_optimizer"] = self.meta_optimizer.state_dict()
        if self.last_meta_loss is not None:
            state["last_meta_loss"] = self.last_meta_loss.detach().cpu()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        if self.meta_module is not None and "meta_module" in state:
            self.meta_module.load_state_dict(state["meta_module"])
        if self.meta_optimizer is not None and "meta_optimizer" in state:
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])
        if "last_meta_loss" in state:
            self.last_meta_loss = state["last_meta_loss"].to(self.device)
