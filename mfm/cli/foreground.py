"""Training in this process, in the foreground: the shared body of ``mfm run --headless`` and
``mfm sweep run --headless``. The run is recorded first (status created), then trained with a
progress bar; SIGTERM (``mfm cancel``) stops it after the current step."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from mfm.cli.context import App
from mfm.cli.control_words import open_control, refused
from mfm.cli.errors import UserError
from mfm.config import Config, ConfigError
from mfm.runner.control import ControlError
from mfm.runner.preflight import PreflightError
from mfm.runner.run_options import method_options, resolve_init

__all__ = ["train_in_foreground"]


def train_in_foreground(app: App, cfg: Config, name: str | None, refs: dict[str, int], *,
                        cells: tuple[int, int, str] | None = None,
                        run_id: int | None = None,
                        counts: dict[str, Any] | None = None) -> tuple[int, Any, Path]:
    """Record (or, with ``run_id``, continue) a run of ``cfg`` and train it here. ``cells``:
    (index, total, label) of a sweep's cell, shown as a third progress row. ``counts``: the
    data preview of ``cfg`` when the caller made it (``check_data``), for the parent's class
    count. The full checks (a transferred modulator, the parent run of ``train.init_from``)
    come before anything is recorded. Returns (run id, the execute_run Outcome, checkpoint
    folder)."""
    from mfm.runner.threads import prepare_headless

    prepare_headless(cfg)  # train.threads: OpenMP reads its plan once, when torch loads
    from mfm.engine import resolve_device  # torch loads here, not for `mfm runs`

    try:
        device = resolve_device(cfg.device)
    except ConfigError as e:
        raise UserError(str(e)) from None
    control = open_control(app)
    db = control.db
    resume = run_id is not None
    try:
        options = method_options(db, cfg)
        # a resume takes its weights from its own last.pt: the parent is not needed again
        resuming = resume and _has_checkpoint(control, run_id)
        init_from = None if resuming else resolve_init(db, cfg, counts)
    except PreflightError as e:
        raise UserError(str(e)) from None

    from mfm.cli.progress import RichProgress
    from mfm.runner.execute import execute_run

    try:
        if run_id is None:
            run_id = control.record_here(cfg, name, refs)
            ckpt_dir = control.runs_root / str(run_id)
        else:
            ckpt_dir = control.claim_here(run_id, resume=True)
    except ControlError as e:
        raise refused(e) from None
    err = Console(stderr=True)
    err.print(f"run {run_id}: {cfg.method.name} on {cfg.data.name}-LT "
              f"(IF {cfg.data.imbalance_factor:g}, {cfg.data.profile}), {cfg.model.name}, "
              f"{device}; records in {app.shown}", markup=False)
    progress = RichProgress(err, cells=cells)
    stop = threading.Event()  # `mfm cancel ID` sends SIGTERM: stop after the current step
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        outcome = execute_run(db, run_id, checkpoint_dir=ckpt_dir, resume=resume,
                              extra_callbacks=(progress,), method_options=options,
                              init_from=init_from, stop=stop)
    finally:
        progress.stop()
        signal.signal(signal.SIGTERM, previous)
    return run_id, outcome, ckpt_dir


def _has_checkpoint(control: Any, run_id: int | None) -> bool:
    """Does the recorded run ``run_id`` have a ``last.pt`` to resume from?"""
    from mfm import runfiles

    if run_id is None:
        return False
    try:
        rec = control.run(run_id)
    except ControlError:
        return False
    return runfiles.has_checkpoint(rec.checkpoint_dir or control.runs_root / str(run_id))
