"""``mfm run``: train a configuration and record it."""

from __future__ import annotations

import os
import socket
import sys
import traceback

import click
from rich.console import Console

from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.config import Config, ConfigError, config_to_dict, load_config
from mfm.store import repo

__all__ = ["run", "load_config_or_fail"]


def load_config_or_fail(config_path: str | None, overrides: tuple[str, ...]) -> Config:
    try:
        return load_config(config_path, overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None


@click.command()
@click.option("--headless", is_flag=True,
              help="Train in this process, in the foreground, with a progress bar.")
@click.option("--config", "config_path", metavar="FILE", default=None,
              help="TOML file of settings ([data], [model], [method], [train], [optim]).")
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override one setting, e.g. --set optim.lr=0.05 (repeatable; wins over "
                   "--config).")
@click.option("--name", default=None, help="A name for the run.")
@pass_app
def run(app: App, headless: bool, config_path: str | None, overrides: tuple[str, ...],
        name: str | None) -> None:
    """Train one run and record it (metrics, per-class accuracy, checkpoints).

    Settings come from the defaults, then --config, then each --set. The default trains
    a ResNet-20 on scikit-learn's digits made long-tailed (imbalance factor 10).

    \b
    Examples:
      mfm run --headless
      mfm run --headless --set method.name=balanced_softmax --set train.epochs=10
      mfm run --headless --config cifar10_lt.toml --set data.imbalance_factor=200
    """
    cfg = load_config_or_fail(config_path, overrides)
    if not headless:
        raise UserError("--headless: queued background runs are not available yet in this "
                        "version; run in the foreground with mfm run --headless")

    # torch is imported here, not at module level, so that `mfm runs` and `mfm show` start fast.
    from mfm.data import build_data
    from mfm.engine import RunStopped, Tee, fit, resolve_device, seed_everything

    try:
        device = resolve_device(cfg.device)
    except ConfigError as e:
        raise UserError(str(e)) from None
    db = app.open_db()
    seed_everything(cfg.seed, device)
    try:
        data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                          eval_batch_size=cfg.train.eval_batch_size, device=device, seed=cfg.seed)
    except ConfigError as e:
        raise UserError(str(e)) from None

    from mfm.cli.progress import RichProgress, summary_table
    from mfm.cli.store_sink import StoreSink

    run_id = repo.create_run(db, config=config_to_dict(cfg), epochs_total=cfg.train.epochs,
                             name=name, status="created")
    ckpt_dir = app.runs_root() / str(run_id)
    repo.update_run(db, run_id, checkpoint_dir=str(ckpt_dir))
    repo.mark_running(db, run_id, host=socket.gethostname(), pid=os.getpid(), device=str(device))
    err = Console(stderr=True)
    out = Console()
    err.print(f"run {run_id}: {cfg.method.name} on {cfg.data.name}-LT "
              f"(IF {cfg.data.imbalance_factor:g}, {cfg.data.profile}), {cfg.model.name}, "
              f"{device}; records in {app.db_target}")
    sink = StoreSink(db, run_id)
    progress = RichProgress(err)
    try:
        result = fit(cfg, data, device=device, callbacks=Tee(sink, progress),
                     checkpoint_dir=ckpt_dir)
    except (KeyboardInterrupt, RunStopped):
        progress.stop()
        sink.flush()
        repo.mark_finished(db, run_id, "cancelled")
        err.print(f"run {run_id} cancelled; its last completed epoch is checkpointed in "
                  f"{ckpt_dir}")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 — any failure is recorded with its traceback
        progress.stop()
        repo.mark_finished(db, run_id, "failed", error=traceback.format_exc())
        click.echo(f"error: run {run_id} failed: {type(e).__name__}: {e} "
                   f"(traceback stored: mfm show {run_id})", err=True)
        sys.exit(1)
    repo.mark_finished(db, run_id, "completed", summary=result.summary)
    out.print(summary_table(run_id, result.summary))
    out.print(f"per-class accuracy: mfm show {run_id}")
