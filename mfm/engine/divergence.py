"""Noticing a run that diverged: a training loss or a weight that is no longer finite.

A diverged run must end as failed with one line saying where, and its last good checkpoint must
stay what it was. On CUDA, reading the loss after every step would wait on the device each
step; :class:`LossWatch` instead keeps the first bad step in device tensors (``torch.where``)
and is read only when the loop already waits (logging steps) and at the end of each epoch.
Epochs in messages are 1-based, as everywhere a user reads them (``epoch 1`` is the first);
steps are the global optimiser step as recorded with the step metrics (1 = the first step).
"""

from __future__ import annotations

import math

import torch

__all__ = ["Diverged", "LossWatch", "check_weights"]


class Diverged(Exception):
    """Training produced a non-finite loss or weights. ``epoch`` is 0-based (the engine's
    count); the message says ``diverged at epoch E, step S: WHAT`` with E 1-based."""

    def __init__(self, epoch: int, step: int, what: str):
        super().__init__(f"diverged at epoch {epoch + 1}, step {step}: {what}")
        self.epoch, self.step, self.what = epoch, step, what


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


class LossWatch:
    """Remembers, on the loss's device, the first step whose loss was not finite.

    ``observe`` never waits on the device; ``check`` does (one read) and raises
    :class:`Diverged` if a bad step was seen. ``check_is_free`` is true on the CPU, where
    the loop may check after every step.
    """

    def __init__(self, *, first_step: int):
        self.first_step = first_step  # the global step number of the first observed step
        self.check_is_free = False
        self._seen: torch.Tensor | None = None  # steps observed so far (device)
        self._bad: torch.Tensor | None = None  # index (1-based) of the first bad one, or 0
        self._value: torch.Tensor | None = None  # its loss

    def observe(self, loss: torch.Tensor) -> None:
        loss = loss.detach().reshape(()).float()
        if self._seen is None:
            self.check_is_free = loss.device.type == "cpu"
            self._seen = torch.zeros((), dtype=torch.long, device=loss.device)
            self._bad = torch.zeros((), dtype=torch.long, device=loss.device)
            self._value = torch.zeros((), dtype=torch.float32, device=loss.device)
        assert self._bad is not None and self._value is not None  # set with _seen
        self._seen.add_(1)
        first = (self._bad == 0) & ~torch.isfinite(loss)
        self._bad = torch.where(first, self._seen, self._bad)
        self._value = torch.where(first, loss, self._value)

    def check(self, *, epoch: int) -> None:
        """Raise :class:`Diverged` if an observed loss was not finite (reads the device).
        Called at least once per epoch, so the bad step belongs to ``epoch``."""
        if self._bad is None:
            return
        assert self._value is not None  # set with _bad
        bad = int(self._bad)
        if bad:
            step = self.first_step + bad - 1
            raise Diverged(epoch, step, f"loss {_number(float(self._value))}")


@torch.no_grad()
def check_weights(model: torch.nn.Module, *, epoch: int, step: int) -> None:
    """Raise :class:`Diverged` naming the first parameter or buffer (BatchNorm statistics) of
    ``model`` that holds a non-finite value. One device read for the whole model."""
    named = [(n, t) for n, t in model.state_dict().items()
             if torch.is_tensor(t) and t.is_floating_point() and t.numel()]
    if not named:
        return
    flags = torch.stack([torch.isfinite(t).all() for _, t in named])
    if bool(flags.all()):
        return
    name = named[int((~flags).nonzero()[0, 0])][0]
    raise Diverged(epoch, step, f"weights not finite ({name})")
