"""``mfm run``: train a configuration and record it."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from mfm.cli.context import App, pass_app
from mfm.cli.control_words import open_control, refused, supervisor_text
from mfm.cli.errors import UserError
from mfm.config import Config, ConfigError, load_config
from mfm.runner.control import ControlError
from mfm.runner.preflight import PreflightError, check_data
from mfm.text import check_name

__all__ = ["run", "load_config_or_fail"]


def load_config_or_fail(config_path: str | None, overrides: tuple[str, ...]) -> Config:
    try:
        return load_config(config_path, overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None


def compose_named(app: App, dataset_name: str | None, config_name: str | None,
                  config_path: str | None, overrides: tuple[str, ...]
                  ) -> tuple[Config, dict[str, int]]:
    """Compose a run config from saved specs; returns it and the record ids it came from."""
    try:
        return open_control(app).compose(dataset=dataset_name, config=config_name,
                                         config_file=config_path, overrides=overrides)
    except ControlError as e:
        raise refused(e) from None
    except ConfigError as e:
        raise UserError(str(e)) from None


def enqueue(app: App, cfg: Config, name: str | None, *, dataset_spec_id: int | None = None,
            config_id: int | None = None, slot: str = "", host: str = "") -> int:
    """Queue ``cfg`` (frozen now, with the code version), make sure a supervisor serves it
    (mfm.runner.control decides which), and print the run id on stdout."""
    control = open_control(app)
    try:
        queued = control.queue([cfg], [name], dataset_spec_id=dataset_spec_id,
                               config_id=config_id, slot=slot, host=host)
    except ControlError as e:
        raise refused(e) from None
    (run_id,) = queued.run_ids
    position = queued.positions.get(run_id)
    note = queued.supervisor
    where = f"run {run_id} queued (position {position})"
    if note.state == "slurm-unserved":
        click.echo(f"{where} for Slurm: {supervisor_text(note, control.db.display)}", err=True)
    elif note.state == "slurm":
        click.echo(f"{where} for Slurm. Watch: mfm runs, mfm logs {run_id} --follow", err=True)
    elif note.state == "elsewhere":
        click.echo(f"{where} for host {note.host}: its supervisor starts it. Watch: mfm runs, "
                   f"mfm worker status", err=True)
    else:
        click.echo(f"{where}; {supervisor_text(note, control.db.display)}. "
                   f"Watch: mfm runs, mfm logs {run_id} --follow", err=True)
    click.echo(str(run_id))
    return run_id


@click.command()
@click.option("--headless", is_flag=True,
              help="Train in this process, in the foreground, with a progress bar (default: "
                   "queue the run for the background supervisor and print its id).")
@click.option("--config", "config_path", metavar="FILE", default=None,
              help="TOML file of settings ([data], [model], [method], [train], [optim]).")
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override one setting, e.g. --set optim.lr=0.05 (repeatable; wins over "
                   "--config).")
@click.option("--name", default=None, help="A name for the run.")
@click.option("--dataset", "dataset_name", default=None, metavar="NAME",
              help="A saved dataset spec (data.* settings; made in mfm-tui).")
@click.option("--config-name", "config_name", default=None, metavar="NAME[@VERSION]",
              help="A saved method config (latest version unless @VERSION; made in mfm-tui).")
@click.option("--slot", default="", metavar="[HOST:]SLOT",
              help="Queue for this slot or GPU only (gpu1, gpu1.0, cpu0; default: any); "
                   "HOST:SLOT also pins the host (box2:gpu1).")
@click.option("--executor", type=click.Choice(["any", "local", "slurm"]), default="any",
              show_default=True, help="slurm: train it as a Slurm job (a worker started "
              "with `mfm worker --executor slurm` takes it; same as --slot slurm).")
@click.option("--host", "host", default="", metavar="HOST",
              help="Queue for the supervisor of this host only (default: any host serving "
                   "this database).")
@pass_app
def run(app: App, headless: bool, config_path: str | None, overrides: tuple[str, ...],
        name: str | None, dataset_name: str | None, config_name: str | None,
        slot: str, host: str, executor: str) -> None:
    """Queue a run (or, with --headless, train it here) and record it: metrics, per-class
    accuracy, checkpoints.

    Settings come from the defaults, then --config, then each --set. The default trains
    a ResNet-20 on scikit-learn's digits made long-tailed (imbalance factor 10). Without
    --headless the run goes to the queue, a supervisor is started for this database if none
    serves it, and the run id is printed.

    \b
    Examples:
      mfm run --set method.name=mfm            # queued; prints the id
      mfm run --slot gpu1 --set method.name=ce # queued for GPU 1 only
      mfm run --slot box2:gpu1                 # GPU 1 of host box2 (several boxes)
      mfm run --executor slurm                 # a Slurm job (mfm worker --executor slurm)
      mfm run --headless
      mfm run --headless --set method.name=balanced_softmax --set train.epochs=10
      mfm run --headless --config cifar10_lt.toml --set data.imbalance_factor=200
    """
    if name is not None and (why := check_name("--name", name)):
        raise UserError(why)
    refs: dict[str, int] = {}
    if dataset_name or config_name:
        cfg, refs = compose_named(app, dataset_name, config_name, config_path, overrides)
    else:
        cfg = load_config_or_fail(config_path, overrides)
    if executor == "slurm":
        if headless:
            raise UserError("--executor: slurm is for queued runs; a --headless run trains "
                            "in this process")
        if slot and slot.strip() not in ("slurm", "any"):
            raise UserError(f"--slot: {slot} is a local slot; --executor slurm runs in a "
                            f"Slurm job")
        slot = "slurm"
    if not headless:
        enqueue(app, cfg, name, **refs, slot=slot, host=host)
        return
    if slot or host:
        opt = "--slot" if slot else "--host"
        raise UserError(f"{opt}: only for queued runs; a --headless run trains in this "
                        "process (choose its device with --set device=cuda:N)")
    try:  # queued runs are checked by submit_runs (once); a run trained here, here
        counts = check_data(cfg)
    except PreflightError as e:
        raise UserError(str(e)) from None
    from mfm.cli.foreground import train_in_foreground

    run_id, outcome, ckpt_dir = train_in_foreground(app, cfg, name, refs, counts=counts)
    from mfm.cli.progress import summary_table
    from mfm.text import one_line

    if outcome.unrecorded is not None:  # the records could not take the run's end
        if outcome.status == "completed":
            Console().print(summary_table(run_id, outcome.summary or {}))
        what = f"failed: {outcome.reason}" if outcome.status == "failed" else outcome.status
        click.echo(one_line(f"error: run {run_id} {what}; its end could not be recorded "
                            f"({outcome.unrecorded}): the records may show it running until "
                            f"an `mfm worker` serving {app.shown} on this host "
                            f"marks it "
                            f"lost", limit=800), err=True)
        sys.exit(1)
    if outcome.status == "cancelled":
        Console(stderr=True).print(f"run {run_id} cancelled; the last completed epoch is "
                                   f"checkpointed in {ckpt_dir} (mfm resume {run_id})",
                                   markup=False)
        sys.exit(130)
    if outcome.status == "failed":
        reason = outcome.reason or one_line(outcome.error or "?")
        stored = ("traceback: " if "\n" in (outcome.error or "").strip() else "") + \
            f"mfm show {run_id}"
        click.echo(f"error: run {run_id} failed: {reason} ({stored})", err=True)
        sys.exit(1)
    Console().print(summary_table(run_id, outcome.summary or {}))
    Console().print(f"per-class accuracy: mfm show {run_id}")
