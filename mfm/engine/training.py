"""fit / train_one_epoch / evaluate: the training loop shared by every method.

The loop takes a resolved Config, prepared data and a Callbacks object; it knows nothing of
the database or the terminal. Checkpoints are written atomically at the end of every epoch
(``last.pt``; ``best.pt`` holds the weights of the best epoch so far: by validation accuracy
when the data holds a validation split, else by test accuracy).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mfm.atomic import save_atomic
from mfm.config import Config, ConfigError
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
from mfm.engine.stages import (
    ParentMismatch,
    apply_train_mode,
    freeze_for,
    load_parent,
    reset_classifier,
    trainable_params,
)
from mfm.engine.threads import LoadFollower, apply_threads, follows_load
from mfm.methods import Method, create_method
from mfm.models import create_model
from mfm.optim.maxnorm import MaxNorm
from mfm.runfiles import BEST, LAST

__all__ = ["RunStopped", "CheckpointMissing", "Diverged", "FitResult", "ParentMismatch",
           "StepSettings",
           "amp_dtype", "build_model", "build_optimizer", "compile_for_training", "evaluate",
           "evaluate_all", "fit", "step_settings", "train_one_epoch"]


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
    model = model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device`` (None: fp32). fp16 is CUDA-only."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.amp", f"fp16 autocast runs on CUDA only (the run is on "
                                           f"{device}): use train.amp=bf16 or off")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    raise ConfigError("train.amp", f"must be off | bf16 | fp16 (got {amp!r})")


@dataclass(frozen=True)
class StepSettings:
    """How each training step executes (train.amp, train.channels_last, train.compile)."""

    autocast: torch.dtype | None = None
    channels_last: bool = False
    device_type: str = "cpu"

    def context(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.autocast)

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x


def step_settings(cfg: Config, device: torch.device) -> StepSettings:
    return StepSettings(autocast=amp_dtype(cfg.train.amp, device),
                        channels_last=cfg.train.channels_last, device_type=device.type)


def compile_for_training(cfg: Config, model: torch.nn.Module) -> torch.nn.Module:
    """The module the plain training step calls: ``torch.compile(model)`` with
    train.compile=plain (it shares the parameters; checkpoints and evaluation keep the eager
    module), else the model itself. The meta methods' bilevel step cannot be compiled
    (config validation refuses it: aot_autograd has no double backward)."""
    if cfg.train.compile == "off":
        return model
    if cfg.method.name in ("mfm", "mwnet"):
        raise ConfigError("train.compile", f"cannot compile method.name={cfg.method.name}'s "
                                           "bilevel step (double backward); use off")
    compiled: Callable[..., Any] = torch.compile(model)
    assert isinstance(compiled, torch.nn.Module)
    return compiled


def train_one_epoch(model: torch.nn.Module, method: Method, optimizer: torch.optim.Optimizer,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, epoch: int,
                    global_step: int, log_every: int, callbacks: Callbacks,
                    settings: StepSettings | None = None,
                    load: LoadFollower | None = None, trainable: str = "all",
                    after_step: Callable[[], None] | None = None) -> tuple[float, int]:
    """One pass over the training batches. Returns (mean training loss, new global step).
    ``settings``: autocast and memory layout of the steps (train.amp, train.channels_last);
    ``load``: train.threads=auto following the load (looked at after every step);
    ``trainable``: train.trainable (classifier: the frozen rest stays in eval mode, its
    BatchNorm statistics unchanged); ``after_step``: run after every optimiser step
    (optim.max_norm's projection).

    Raises :class:`Diverged` if a step's loss is not finite: checked after every step on the
    CPU, on logging steps and at the end of the epoch elsewhere (no extra device sync per
    step); the steps up to the check are reported to ``callbacks`` first.
    """
    apply_train_mode(model, trainable)
    total: torch.Tensor | None = None
    n = 0
    watch = LossWatch(first_step=global_step + 1)
    settings = settings or StepSettings()
    for x, y in batches:
        with settings.context():
            out = method.training_step(model, optimizer, settings.batch(x), y, epoch=epoch,
                                       step=global_step)
        if after_step is not None:
            after_step()
        if load is not None:
            load.step()
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
    # the split the best epoch is chosen on: "val" when the data holds a validation split,
    # else "test"; a resumed run keeps the rule its checkpoint was written under
    best_on: str = "test"
    seconds: list[float] = field(default_factory=list)
    # the accuracy each epoch is chosen by (validation, else test): time to accuracy
    tracked: list[float] = field(default_factory=list)
    restored: EpochResult | None = None  # the checkpointed epoch's result, announced again

    @property
    def best_key(self) -> str:
        """The scalar the best epoch is chosen by."""
        return "val_acc" if self.best_on == "val" else "acc"


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD over the parameters that train (all, or the classifier: train.trainable)."""
    return torch.optim.SGD(trainable_params(model), lr=cfg.optim.lr,
                           momentum=cfg.optim.momentum,
                           nesterov=cfg.optim.nesterov and cfg.optim.momentum > 0,
                           weight_decay=cfg.optim.weight_decay, foreach=True)


def _has_val(data: Any) -> bool:
    return getattr(data, "val", None) is not None


def evaluate_all(model: torch.nn.Module, method: Method, data: Any,
                 groups: dict[str, list[int]]) -> tuple[Evaluation, dict[str, float], list[float]]:
    """Evaluate on the test set (and the validation set, if the data has one) and compute the
    scores once: (test evaluation, {test_loss, acc, many/medium/few, [val_acc]}, per-class
    test accuracy)."""
    chosen: dict[str, float] = {}
    taus = method.tau_choices()
    if taus is not None and _has_val(data):  # the prediction's tau, chosen on validation
        tau, val_acc = choose_tau(model, method, data.val, data.num_classes, taus)
        method.set_tau(tau)
        chosen = {"tau": tau, "val_acc": val_acc}
    test = evaluate(model, method, data.test, data.num_classes)
    class_acc = per_class_accuracy(test.confusion)
    scores = {"test_loss": test.loss, "acc": accuracy(test.confusion),
              **group_accuracy(class_acc, groups)}
    if chosen:
        scores.update(chosen)
    elif _has_val(data):
        scores["val_acc"] = accuracy(evaluate(model, method, data.val, data.num_classes).confusion)
    return test, scores, class_acc


@torch.no_grad()
def choose_tau(model: torch.nn.Module, method: Method,
               batches: Iterable[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
               taus: tuple[float, ...]) -> tuple[float, float]:
    """(tau, validation accuracy): the tau of ``taus`` whose prediction
    (``method.logits_at``) is most accurate on ``batches``, the first of equals (the grid's
    order: the smallest tau for an ascending grid). The network runs once per batch."""
    model.eval()
    confs = [torch.zeros(num_classes, num_classes, dtype=torch.long) for _ in taus]
    for x, y in batches:
        logits = model(x)
        for i, tau in enumerate(taus):
            preds = method.logits_at(logits, tau).argmax(dim=1)
            confs[i] += confusion_matrix(preds, y, num_classes).cpu()
    accs = [accuracy(c) for c in confs]
    best = max(range(len(taus)), key=lambda i: (accs[i], -i))
    return taus[best], accs[best]


def _summary_entry(scalars: dict[str, float], epoch: int) -> dict[str, Any]:
    keep = ("acc", "many", "medium", "few", "test_loss", "val_acc")
    return {"epoch": epoch, **{k: scalars[k] for k in keep if k in scalars}}


@dataclass
class _Run:
    """Everything one ``fit`` trains with and where it stands."""

    cfg: Config
    data: Any
    device: torch.device
    cb: Callbacks
    method: Method
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    groups: dict[str, list[int]]
    checkpoints: Path | None  # where last.pt and best.pt go (None: train.checkpoint off)
    progress: _Progress
    step: StepSettings = field(default_factory=StepSettings)
    train_model: torch.nn.Module | None = None  # what the training step calls (compiled or not)
    threads: dict[str, Any] | None = None  # what mfm.engine.threads.apply_threads set
    load: LoadFollower | None = None  # train.threads=auto following the load
    max_norm: MaxNorm | None = None  # optim.max_norm's projection (radius from the start)


def _build(cfg: Config, data: Any, *, device: torch.device, callbacks: Callbacks,
           checkpoint_dir: Path | None, method_options: dict[str, Any] | None,
           init_from: Path | None = None) -> _Run:
    """The method, the model (the parent's weights with ``init_from``; frozen but its
    classifier with train.trainable=classifier; attached to the method), its optimiser, lr
    schedule and MaxNorm projection (its radius from these starting weights)."""
    method = create_method(cfg, data.train_counts)
    model = build_model(cfg, method, num_classes=data.num_classes, in_channels=data.in_channels,
                        device=device)
    if init_from is not None:  # a stage-2 run: the parent's weights, before anything uses them
        load_parent(model, init_from, device=device)
        if cfg.train.reset_classifier:
            reset_classifier(model)
    freeze_for(model, cfg.train.trainable)
    method.attach(model=model, meta_x=data.meta_x, meta_y=data.meta_y, device=device,
                  **(method_options or {}))
    optimizer = build_optimizer(cfg, model)
    scheduler = make_scheduler(optimizer, epochs=cfg.train.epochs,
                               warmup_epochs=cfg.optim.warmup_epochs,
                               milestones=cfg.optim.milestones, decay=cfg.optim.lr_decay,
                               lead=method.lr_lead_epochs, schedule=cfg.optim.schedule)
    return _Run(cfg=cfg, data=data, device=device, cb=callbacks, method=method, model=model,
                optimizer=optimizer, scheduler=scheduler,
                groups=shot_groups(data.train_counts, cfg.train.many_threshold,
                                   cfg.train.few_threshold),
                checkpoints=checkpoint_dir if cfg.train.checkpoint else None,
                progress=_Progress(best_on="val" if _has_val(data) else "test"),
                step=step_settings(cfg, device), train_model=compile_for_training(cfg, model),
                max_norm=MaxNorm(model, cfg.optim.max_norm) if cfg.optim.max_norm > 0 else None)


def _restore(path: Path | None, run: _Run) -> _Progress:
    """Load ``last.pt`` into everything that trains; :class:`CheckpointMissing` without it."""
    if path is None or not path.exists():
        raise CheckpointMissing(path if path is not None else Path(LAST))
    state = load_checkpoint(path, map_location=run.device)
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.method.load_state_dict(state["method"])
    run.data.load_loader_state(state["loader"])
    if run.max_norm is not None:
        run.max_norm.load_state_dict(state["max_norm"])
    restore_rng(state["rng"])
    restored = None
    if state.get("result") is not None:  # checkpoints written before this key existed lack it
        restored = EpochResult(epoch=state["epoch"], **state["result"])
    # checkpoints written before "best_on" existed chose the best epoch on test
    return _Progress(start_epoch=state["epoch"] + 1, global_step=state["global_step"],
                     best=state["best"], best_on=state.get("best_on", "test"),
                     seconds=list(state.get("seconds", [])),
                     tracked=list(state.get("tracked", [])), restored=restored)


def _announce_start(run: _Run) -> None:
    data, p = run.data, run.progress
    run.cb.on_start(StartInfo(
        device=str(run.device), split_hash=data.split_hash, classes=list(data.classes),
        train_counts=list(data.train_counts), meta_counts=list(data.meta_counts),
        test_counts=list(data.test_counts), epochs=run.cfg.train.epochs,
        start_epoch=p.start_epoch, steps_per_epoch=len(data.train),
        num_parameters=sum(q.numel() for q in run.model.parameters()),
        threads=run.threads, execution=_execution(run.cfg)))
    if p.restored is not None:
        run.cb.on_epoch_restored(p.restored)


def _threads_used(run: _Run) -> dict[str, Any] | None:
    """What the run started with, and the counts it used while following the load."""
    if run.threads is None or run.load is None:
        return run.threads
    return {**run.threads, "follows_load": True, "used": sorted(run.load.used)}


def _execution(cfg: Config) -> dict[str, Any]:
    t = cfg.train
    return {"amp": t.amp, "channels_last": t.channels_last, "compile": t.compile}


def _train_epoch(run: _Run, epoch: int) -> dict[str, float]:
    """One epoch's optimiser steps and the lr schedule's step: {train_loss, lr,
    epoch_seconds} (training seconds, evaluation excluded)."""
    p = run.progress
    run.cb.on_epoch_start(epoch)
    t0 = time.perf_counter()
    meta_for_epoch = getattr(run.data, "meta_for_epoch", None)  # data.meta_source=resampled
    meta = (meta_for_epoch(epoch, first=epoch == p.start_epoch)
            if meta_for_epoch is not None else None)
    if meta is not None:
        run.method.set_meta_set(*meta)
    lr = run.optimizer.param_groups[0]["lr"]
    if run.method.trains:
        train_loss, p.global_step = train_one_epoch(
            run.train_model or run.model, run.method, run.optimizer, run.data.train,
            epoch=epoch, global_step=p.global_step, log_every=run.cfg.train.log_every,
            callbacks=run.cb, settings=run.step, load=run.load,
            trainable=run.cfg.train.trainable,
            after_step=run.max_norm.apply if run.max_norm is not None else None)
    else:  # tau_norm: a stage-2 run that only changes prediction
        train_loss = float("nan")
    # never evaluate, checkpoint or record non-finite weights (a last step that overflowed)
    check_weights(run.model, epoch=epoch, step=p.global_step)
    run.cb.on_train_end(epoch)
    if run.method.trains:
        run.scheduler.step()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - t0
    p.seconds.append(seconds)
    return {"train_loss": train_loss, "lr": lr, "epoch_seconds": seconds}


def _evaluate_and_record(run: _Run, epoch: int, train_scalars: dict[str, float]
                         ) -> tuple[Evaluation, EpochResult]:
    """Evaluate the epoch and update the best epoch so far: the highest validation accuracy
    when the data has a validation split, else the highest test accuracy (first on ties)."""
    p = run.progress
    test, scores, class_acc = evaluate_all(run.model, run.method, run.data, run.groups)
    scalars = {**train_scalars, **scores}
    p.tracked.append(scalars.get("val_acc", scalars["acc"]))
    is_best = p.best is None or scalars[p.best_key] > p.best[p.best_key]
    if is_best:
        p.best = _summary_entry(scalars, epoch)
    return test, EpochResult(epoch=epoch, scalars=scalars, class_acc=class_acc, is_best=is_best)


def _save_checkpoints(run: _Run, result: EpochResult) -> None:
    """``last.pt`` (everything a resume needs, and the epoch's result: a kill between this
    write and the store's record is mended on resume by on_epoch_restored), and ``best.pt``
    when the epoch is the best so far."""
    if run.checkpoints is None:
        return
    p = run.progress
    save_atomic({
        "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "method": run.method.state_dict(),
        "loader": run.data.loader_state(), "rng": capture_rng(), "epoch": result.epoch,
        "global_step": p.global_step, "best": p.best, "best_on": p.best_on,
        "seconds": p.seconds, "tracked": p.tracked,
        "result": {"scalars": result.scalars, "class_acc": result.class_acc,
                   "is_best": result.is_best},
        **({"max_norm": run.max_norm.state_dict()} if run.max_norm is not None else {}),
    }, run.checkpoints / LAST)
    if result.is_best:
        save_atomic({"model": run.model.state_dict(), "epoch": result.epoch},
                    run.checkpoints / BEST)


def _summarise(run: _Run, final: dict[str, float]) -> dict[str, Any]:
    p, epochs = run.progress, run.cfg.train.epochs
    return {
        "final": _summary_entry(final, epochs - 1),
        "best": p.best,
        "best_on": p.best_on,  # the split the best epoch (and best.pt) was chosen on
        "epochs": epochs,
        "seconds_per_epoch": (sum(p.seconds) / len(p.seconds)) if p.seconds else None,
        # training seconds until the run first reached 95 % of its final validation accuracy
        # (test accuracy without a validation split)
        "seconds_to_95": seconds_to_fraction(p.tracked, p.seconds),
        "device": str(run.device),
        "threads": _threads_used(run),
        "execution": _execution(run.cfg),
        "groups": {k: v for k, v in run.groups.items()},
    }


def fit(cfg: Config, data: Any, *, device: torch.device, callbacks: Callbacks | None = None,
        checkpoint_dir: Path | None = None, resume: bool = False,
        method_options: dict[str, Any] | None = None,
        init_from: Path | None = None) -> FitResult:
    """Train ``cfg`` on ``data`` (a mfm.data.LongTailData) and return the summary.

    With ``resume=True`` and a ``last.pt`` in ``checkpoint_dir``, training continues after
    the last completed epoch with the optimiser, scheduler, method, data-order and RNG state
    it had, so the remaining epochs are the ones an uninterrupted run would have produced.
    ``method_options`` go to the method's ``attach`` (e.g. mfm's ``modulator_path``).
    ``init_from``: the parent run's checkpoint (train.init_from, resolved and checked by the
    caller, which knows the records): its model weights are loaded before training
    (:class:`ParentMismatch` if they do not fit this model); a resume takes everything from
    ``last.pt`` instead.

    ``resume=True`` requires ``checkpoint_dir/last.pt``: without it :class:`CheckpointMissing`
    is raised rather than training from scratch (which would write new epochs over the
    records of the old ones). A caller whose run has no recorded epoch and no checkpoint
    passes ``resume=False`` to start again (``mfm.runner.execute.execute_run`` does).

    The best epoch (``summary["best"]``, ``best.pt``) is the one with the highest validation
    accuracy when the data holds a validation split, else the highest test accuracy;
    ``summary["best_on"]`` says which ("val" | "test").

    A non-finite training loss or weight raises :class:`Diverged` (``diverged at epoch E,
    step S: loss nan``, E 1-based) before that epoch's checkpoint is written, so ``last.pt``
    and ``best.pt`` keep the last good epoch.
    """
    # the thread policy first: on a GPU the data pipeline and the host side use threads too
    threads = apply_threads(cfg.train.threads)
    run = _build(cfg, data, device=device, callbacks=callbacks or Callbacks(),
                 checkpoint_dir=checkpoint_dir, method_options=method_options,
                 init_from=None if resume else init_from)
    run.threads = threads
    if follows_load(threads):
        run.load = LoadFollower(int(threads["threads"]))
    if resume:
        run.progress = _restore(checkpoint_dir / LAST if checkpoint_dir is not None else None,
                                run)
    _announce_start(run)
    final: tuple[Evaluation, dict[str, float]] | None = None
    for epoch in range(run.progress.start_epoch, cfg.train.epochs):
        test, result = _evaluate_and_record(run, epoch, _train_epoch(run, epoch))
        final = test, result.scalars
        _save_checkpoints(run, result)
        run.cb.on_epoch(result)
    if final is None:  # resumed a run whose every epoch was already done
        test, scores, _ = evaluate_all(run.model, run.method, data, run.groups)
        final = test, scores
    summary = _summarise(run, final[1])
    confusion = final[0].confusion.tolist()
    run.method.on_fit_end(checkpoint_dir)
    run.cb.on_end(summary, confusion)
    return FitResult(summary=summary, confusion=confusion)
