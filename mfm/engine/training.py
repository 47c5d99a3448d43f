"""fit / train_one_epoch / evaluate: the training loop shared by every method.

The loop takes a resolved Config, prepared data and a Callbacks object; it knows nothing of
the database or the terminal. Checkpoints are written atomically at the end of every epoch
(``last.pt``; ``best.pt`` holds the weights of the best epoch so far).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mfm.atomic import save_atomic
from mfm.config import Config
from mfm.engine.callbacks import Callbacks, EpochResult, StartInfo
from mfm.engine.checkpoint import capture_rng, load_checkpoint, restore_rng
from mfm.engine.divergence import Diverged, LossWatch, check_weights
from mfm.engine.metrics import (
    accuracy,
    confusion_matrix,
    group_accuracy,
    per_class_accuracy,
    seconds_to_fraction,
    shot_groups,
)
from mfm.engine.schedule import make_scheduler
from mfm.methods import Method, create_method
from mfm.models import create_model

__all__ = ["RunStopped", "CheckpointMissing", "Diverged", "FitResult", "build_model",
           "build_optimizer", "evaluate", "evaluate_all", "fit", "train_one_epoch"]

LAST = "last.pt"
BEST = "best.pt"


class RunStopped(Exception):
    """Raised when Callbacks.should_stop() asked the run to end; the last completed epoch's
    checkpoint is on disk, so the run can be resumed."""

    def __init__(self, epoch: int):
        super().__init__(f"stopped during epoch {epoch}")
        self.epoch = epoch


class CheckpointMissing(FileNotFoundError):
    """``fit(resume=True)`` found no ``last.pt``: training from scratch would write over the
    records of the epochs the lost checkpoint held. One line, naming the file."""

    def __init__(self, path: Path):
        super().__init__(f"cannot resume: checkpoint {path} does not exist (training from "
                         f"scratch would overwrite the recorded epochs)")
        self.path = path


@dataclass(frozen=True)
class FitResult:
    summary: dict[str, Any]
    confusion: list[list[int]]


@dataclass(frozen=True)
class Evaluation:
    loss: float
    confusion: torch.Tensor


def build_model(cfg: Config, method: Method, *, num_classes: int, in_channels: int,
                device: torch.device) -> torch.nn.Module:
    classifier = method.classifier if cfg.model.classifier == "auto" else cfg.model.classifier
    model = create_model(cfg.model.name, num_classes=num_classes, in_channels=in_channels,
                         classifier=classifier)
    return model.to(device)


def train_one_epoch(model: torch.nn.Module, method: Method, optimizer: torch.optim.Optimizer,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, epoch: int,
                    global_step: int, log_every: int, callbacks: Callbacks) -> tuple[float, int]:
    """One pass over the training batches. Returns (mean training loss, new global step).

    Raises :class:`Diverged` if a step's loss is not finite: checked after every step on the
    CPU, on logging steps and at the end of the epoch elsewhere (no extra device sync per
    step); the steps up to the check are reported to ``callbacks`` first.
    """
    model.train()
    total: torch.Tensor | None = None
    n = 0
    watch = LossWatch(first_step=global_step + 1)
    for x, y in batches:
        out = method.training_step(model, optimizer, x, y, epoch=epoch, step=global_step)
        loss = out["loss"]
        watch.observe(loss)
        total = loss if total is None else total + loss
        n += 1
        global_step += 1
        values = None
        if global_step % log_every == 0:
            # .item() syncs with the device: only on logging steps.
            values = {k: float(v) for k, v in out.items()}
        callbacks.on_step(epoch, global_step, values)
        if values is not None or watch.check_is_free:
            watch.check(epoch=epoch)
        if callbacks.should_stop():
            raise RunStopped(epoch)
    watch.check(epoch=epoch)
    return (float(total) / n if total is not None else float("nan")), global_step


@torch.no_grad()
def evaluate(model: torch.nn.Module, method: Method,
             batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> Evaluation:
    """Mean cross-entropy and the confusion matrix over a (balanced) test set."""
    model.eval()
    loss_sum = None
    count = 0
    conf = None
    for x, y in batches:
        logits = model(x)
        batch_loss = F.cross_entropy(logits, y, reduction="sum")
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        count += y.numel()
        preds = method.eval_logits(logits).argmax(dim=1)
        c = confusion_matrix(preds, y, num_classes)
        conf = c if conf is None else conf + c
    if conf is None:
        conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss = float(loss_sum) / max(count, 1) if loss_sum is not None else float("nan")
    return Evaluation(loss=loss, confusion=conf.cpu())


@dataclass
class _Progress:
    """Where training stands: what a checkpoint carries across a resume."""

    start_epoch: int = 0
    global_step: int = 0
    best: dict[str, Any] | None = None
    seconds: list[float] = field(default_factory=list)
    # the accuracy each epoch is chosen by (validation, else test): time to accuracy
    tracked: list[float] = field(default_factory=list)
    restored: EpochResult | None = None  # the checkpointed epoch's result, announced again


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                           nesterov=cfg.optim.nesterov and cfg.optim.momentum > 0,
                           weight_decay=cfg.optim.weight_decay, foreach=True)


def evaluate_all(model: torch.nn.Module, method: Method, data: Any,
                 groups: dict[str, list[int]]) -> tuple[Evaluation, dict[str, float], list[float]]:
    """Evaluate on the test set (and the validation set, if the data has one) and compute the
    scores once: (test evaluation, {test_loss, acc, many/medium/few, [val_acc]}, per-class
    test accuracy)."""
    test = evaluate(model, method, data.test, data.num_classes)
    class_acc = per_class_accuracy(test.confusion)
    scores = {"test_loss": test.loss, "acc": accuracy(test.confusion),
              **group_accuracy(class_acc, groups)}
    if getattr(data, "val", None) is not None:
        scores["val_acc"] = accuracy(evaluate(model, method, data.val, data.num_classes).confusion)
    return test, scores, class_acc


def _summary_entry(scalars: dict[str, float], epoch: int) -> dict[str, Any]:
    keep = ("acc", "many", "medium", "few", "test_loss", "val_acc")
    return {"epoch": epoch, **{k: scalars[k] for k in keep if k in scalars}}


def _restore(path: Path | None, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: Any, method: Method, data: Any, device: torch.device) -> _Progress:
    """Load ``last.pt`` into everything that trains; :class:`CheckpointMissing` without it."""
    if path is None or not path.exists():
        raise CheckpointMissing(path if path is not None else Path(LAST))
    state = load_checkpoint(path, map_location=device)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    method.load_state_dict(state["method"])
    data.load_loader_state(state["loader"])
    restore_rng(state["rng"])
    restored = None
    if state.get("result") is not None:  # checkpoints written before this key existed lack it
        restored = EpochResult(epoch=state["epoch"], **state["result"])
    return _Progress(start_epoch=state["epoch"] + 1, global_step=state["global_step"],
                     best=state["best"], seconds=list(state.get("seconds", [])),
                     tracked=list(state.get("tracked", [])), restored=restored)


def fit(cfg: Config, data: Any, *, device: torch.device, callbacks: Callbacks | None = None,
        checkpoint_dir: Path | None = None, resume: bool = False,
        method_options: dict[str, Any] | None = None) -> FitResult:
    """Train ``cfg`` on ``data`` (a mfm.data.LongTailData) and return the summary.

    With ``resume=True`` and a ``last.pt`` in ``checkpoint_dir``, training continues after
    the last completed epoch with the optimiser, scheduler, method, data-order and RNG state
    it had, so the remaining epochs are the ones an uninterrupted run would have produced.
    ``method_options`` go to the method's ``attach`` (e.g. mfm's ``modulator_path``).

    ``resume=True`` requires ``checkpoint_dir/last.pt``: without it :class:`CheckpointMissing`
    is raised rather than training from scratch (which would write new epochs over the
    records of the old ones). A caller whose run has no recorded epoch and no checkpoint
    passes ``resume=False`` to start again (``mfm.runner.execute.execute_run`` does).

    A non-finite training loss or weight raises :class:`Diverged` (``diverged at epoch E,
    step S: loss nan``, E 1-based) before that epoch's checkpoint is written, so ``last.pt``
    and ``best.pt`` keep the last good epoch.
    """
    cb = callbacks or Callbacks()
    epochs = cfg.train.epochs
    method = create_method(cfg, data.train_counts)
    model = build_model(cfg, method, num_classes=data.num_classes, in_channels=data.in_channels,
                        device=device)
    method.attach(model=model, meta_x=data.meta_x, meta_y=data.meta_y, device=device,
                  **(method_options or {}))
    optimizer = build_optimizer(cfg, model)
    scheduler = make_scheduler(optimizer, epochs=epochs, warmup_epochs=cfg.optim.warmup_epochs,
                               milestones=cfg.optim.milestones, decay=cfg.optim.lr_decay,
                               lead=method.lr_lead_epochs)
    groups = shot_groups(data.train_counts, cfg.train.many_threshold, cfg.train.few_threshold)
    checkpoints = checkpoint_dir if checkpoint_dir is not None and cfg.train.checkpoint else None

    progress = _Progress()
    if resume:
        progress = _restore(checkpoint_dir / LAST if checkpoint_dir is not None else None,
                            model=model, optimizer=optimizer, scheduler=scheduler,
                            method=method, data=data, device=device)
    cb.on_start(StartInfo(
        device=str(device), split_hash=data.split_hash, classes=list(data.classes),
        train_counts=list(data.train_counts), meta_counts=list(data.meta_counts),
        test_counts=list(data.test_counts), epochs=epochs, start_epoch=progress.start_epoch,
        steps_per_epoch=len(data.train), num_parameters=sum(p.numel() for p in model.parameters())))
    if progress.restored is not None:
        cb.on_epoch_restored(progress.restored)

    final: tuple[Evaluation, dict[str, float]] | None = None
    meta_for_epoch = getattr(data, "meta_for_epoch", None)  # data.meta_source=resampled draws
    for epoch in range(progress.start_epoch, epochs):
        cb.on_epoch_start(epoch)
        t0 = time.perf_counter()
        meta = (meta_for_epoch(epoch, first=epoch == progress.start_epoch)
                if meta_for_epoch is not None else None)
        if meta is not None:
            method.set_meta_set(*meta)
        lr = optimizer.param_groups[0]["lr"]
        train_loss, progress.global_step = train_one_epoch(
            model, method, optimizer, data.train, epoch=epoch, global_step=progress.global_step,
            log_every=cfg.train.log_every, callbacks=cb)
        # never evaluate, checkpoint or record non-finite weights (a last step that overflowed)
        check_weights(model, epoch=epoch, step=progress.global_step)
        cb.on_train_end(epoch)
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - t0
        progress.seconds.append(train_seconds)

        test, scores, class_acc = evaluate_all(model, method, data, groups)
        scalars = {"train_loss": train_loss, "lr": lr, "epoch_seconds": train_seconds, **scores}
        progress.tracked.append(scalars.get("val_acc", scalars["acc"]))
        is_best = progress.best is None or scalars["acc"] > progress.best["acc"]
        if is_best:
            progress.best = _summary_entry(scalars, epoch)
        final = test, scalars
        result = EpochResult(epoch=epoch, scalars=scalars, class_acc=class_acc, is_best=is_best)
        if checkpoints is not None:
            # the checkpoint carries the epoch's result: a kill between this write and the
            # store's record below is mended on resume (on_epoch_restored)
            save_atomic({
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "method": method.state_dict(),
                "loader": data.loader_state(), "rng": capture_rng(), "epoch": epoch,
                "global_step": progress.global_step, "best": progress.best,
                "seconds": progress.seconds, "tracked": progress.tracked,
                "result": {"scalars": scalars, "class_acc": class_acc, "is_best": is_best},
            }, checkpoints / LAST)
            if is_best:
                save_atomic({"model": model.state_dict(), "epoch": epoch}, checkpoints / BEST)
        cb.on_epoch(result)

    if final is None:  # resumed a run whose every epoch was already done
        test, scores, _ = evaluate_all(model, method, data, groups)
        final = test, scores
    test, scalars = final
    seconds = progress.seconds
    summary = {
        "final": _summary_entry(scalars, epochs - 1),
        "best": progress.best,
        "epochs": epochs,
        "seconds_per_epoch": (sum(seconds) / len(seconds)) if seconds else None,
        # training seconds until the run first reached 95 % of its final validation accuracy
        # (test accuracy without a validation split)
        "seconds_to_95": seconds_to_fraction(progress.tracked, seconds),
        "device": str(device),
        "groups": {k: v for k, v in groups.items()},
    }
    confusion = test.confusion.tolist()
    method.on_fit_end(checkpoint_dir)
    cb.on_end(summary, confusion)
    return FitResult(summary=summary, confusion=confusion)
