"""What the engine tells the outside world. The engine knows no database, CLI or UI: it calls
these hooks with plain values, and the caller decides where they go (a SQLite sink, a rich
progress bar, a list in a test)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StartInfo", "EpochResult", "Callbacks", "Tee", "Recorder"]


@dataclass(frozen=True)
class StartInfo:
    device: str
    split_hash: str
    classes: list[str]
    train_counts: list[int]
    meta_counts: list[int]
    test_counts: list[int]
    epochs: int
    start_epoch: int
    steps_per_epoch: int
    num_parameters: int
    # how the run executes: {threads, interop, policy, cores, runs, setting, planned_by}
    # (mfm.engine.threads.apply_threads) and the step's precision/layout/compile settings
    threads: dict[str, Any] | None = None
    execution: dict[str, Any] | None = None

    def class_counts(self) -> dict[str, Any]:
        return {"classes": self.classes, "train": self.train_counts, "meta": self.meta_counts,
                "test": self.test_counts}


@dataclass(frozen=True)
class EpochResult:
    epoch: int
    scalars: dict[str, float]  # train_loss, test_loss, acc, many, medium, few, lr, epoch_seconds
    class_acc: list[float]
    is_best: bool


class Callbacks:
    """No-op base: override what you need."""

    def on_start(self, info: StartInfo) -> None: ...

    def on_epoch_start(self, epoch: int) -> None: ...

    def on_step(self, epoch: int, step: int, values: dict[str, float] | None) -> None:
        """Called after every optimiser step; ``values`` only on logging steps."""

    def on_train_end(self, epoch: int) -> None:
        """The epoch's optimiser steps are done; evaluation and its checkpoint come next."""

    def on_epoch(self, result: EpochResult) -> None: ...

    def on_epoch_restored(self, result: EpochResult) -> None:
        """On resume: the result of the epoch the checkpoint holds, announced again. A process
        killed after the checkpoint was written but before ``on_epoch`` reached its store
        catches up here; stores that already have it can write it again (idempotent)."""

    def on_end(self, summary: dict[str, Any], confusion: list[list[int]]) -> None: ...

    def should_stop(self) -> bool:
        """Polled after every step: True ends the run cleanly at the end of that step."""
        return False


class Tee(Callbacks):
    """Forward every hook to several callbacks, in order."""

    def __init__(self, *targets: Callbacks):
        self.targets = targets

    def on_start(self, info: StartInfo) -> None:
        for t in self.targets:
            t.on_start(info)

    def on_epoch_start(self, epoch: int) -> None:
        for t in self.targets:
            t.on_epoch_start(epoch)

    def on_step(self, epoch: int, step: int, values: dict[str, float] | None) -> None:
        for t in self.targets:
            t.on_step(epoch, step, values)

    def on_train_end(self, epoch: int) -> None:
        for t in self.targets:
            t.on_train_end(epoch)

    def on_epoch(self, result: EpochResult) -> None:
        for t in self.targets:
            t.on_epoch(result)

    def on_epoch_restored(self, result: EpochResult) -> None:
        for t in self.targets:
            t.on_epoch_restored(result)

    def on_end(self, summary: dict[str, Any], confusion: list[list[int]]) -> None:
        for t in self.targets:
            t.on_end(summary, confusion)

    def should_stop(self) -> bool:
        return any(t.should_stop() for t in self.targets)


@dataclass
class Recorder(Callbacks):
    """Keeps everything in memory (tests, notebooks)."""

    info: StartInfo | None = None
    steps: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)
    epochs: list[EpochResult] = field(default_factory=list)
    restored: list[EpochResult] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    confusion: list[list[int]] | None = None

    def on_start(self, info: StartInfo) -> None:
        self.info = info

    def on_step(self, epoch: int, step: int, values: dict[str, float] | None) -> None:
        if values is not None:
            self.steps.append((epoch, step, values))

    def on_epoch(self, result: EpochResult) -> None:
        self.epochs.append(result)

    def on_epoch_restored(self, result: EpochResult) -> None:
        self.restored.append(result)

    def on_end(self, summary: dict[str, Any], confusion: Sequence[Sequence[int]]) -> None:
        self.summary = summary
        self.confusion = [list(r) for r in confusion]
