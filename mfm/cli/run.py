"""``mfm run``: train a configuration and record it."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.config import Config, ConfigError, load_config
from mfm.runner.preflight import PreflightError, check_data
from mfm.runner.procs import host_name
from mfm.store import Database, repo
from mfm.store.db import hide_password
from mfm.text import check_name, visible

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
    from mfm.specs import compose

    db = app.open_db()
    refs: dict[str, int] = {}
    spec = named = None
    if dataset_name:
        rec = repo.get_dataset_spec(db, dataset_name)
        if rec is None:
            names = ", ".join(r.name for r in repo.list_dataset_specs(db)) or "none saved"
            raise UserError(f"--dataset: no dataset spec {visible(repr(dataset_name), 80)} "
                            f"(have: {visible(names, 300)})")
        spec, refs["dataset_spec_id"] = rec.spec, rec.id
    if config_name:
        base, _, version = config_name.partition("@")
        if version and not version.isdigit():
            raise UserError("--config-name: expected NAME or NAME@VERSION "
                            f"(got {visible(repr(config_name), 80)})")
        crec = repo.get_config(db, base, int(version) if version else None)
        if crec is None:
            names = ", ".join(r.name for r in repo.list_configs(db)) or "none saved"
            raise UserError(f"--config-name: no config {visible(repr(config_name), 80)} "
                            f"(have: {visible(names, 300)})")
        named, refs["config_id"] = crec.config, crec.id
    try:
        cfg = compose(dataset_spec=spec, named_config=named, config_file=config_path,
                      overrides=overrides)
    except ConfigError as e:
        raise UserError(str(e)) from None
    return cfg, refs


def enqueue(app: App, cfg: Config, name: str | None, *, dataset_spec_id: int | None = None,
            config_id: int | None = None, slot: str = "", host: str = "") -> int:
    """Queue ``cfg`` (frozen now, with the code version), make sure a supervisor serves this
    database on this host (unless the run is pinned to another host), and print the run id
    on stdout."""
    from mfm.runner.submit import SubmitError, ensure_supervisor, submit_runs
    from mfm.store import queue

    db = app.open_db()
    try:
        (run_id,) = submit_runs(db, db_target=app.db_target, runs_root=app.runs_root(),
                                configs=[cfg], names=[name], dataset_spec_id=dataset_spec_id,
                                config_id=config_id, slot=slot, host=host)
    except SubmitError as e:
        msg = str(e)
        raise UserError("--" + msg if msg.startswith(("slot:", "host:")) else msg) from None
    position = queue.queue_positions(db).get(run_id)
    rec = repo.get_run(db, run_id)
    assert rec is not None  # just queued
    pinned = rec.want_host
    if rec.want_slot == "slurm" and not _serves_slurm(db, pinned):
        click.echo(f"run {run_id} queued (position {position}) for Slurm: no Slurm worker "
                   f"serves this database yet; start one on the login node: mfm worker "
                   f"--executor slurm --detach", err=True)
        click.echo(str(run_id))
        return run_id
    if rec.want_slot == "slurm":
        click.echo(f"run {run_id} queued (position {position}) for Slurm. Watch: mfm runs, "
                   f"mfm logs {run_id} --follow", err=True)
        click.echo(str(run_id))
        return run_id
    if pinned and pinned != host_name():
        click.echo(f"run {run_id} queued (position {position}) for host {pinned}: its "
                   f"supervisor starts it. Watch: mfm runs, mfm worker status", err=True)
        click.echo(str(run_id))
        return run_id
    pid, started = ensure_supervisor(app.db_target, app.runs_root())
    who = (f"started a supervisor (pid {pid}; it exits after 10 idle minutes)" if started
           else f"supervisor pid {pid} serves {db.display}")
    click.echo(f"run {run_id} queued (position {position}); {who}. "
               f"Watch: mfm runs, mfm logs {run_id} --follow", err=True)
    click.echo(str(run_id))
    return run_id


def _serves_slurm(db: Database, host: str | None) -> bool:
    """Does a live supervisor with Slurm slots serve this database (on ``host`` if given)?"""
    from mfm.store import queue

    return any(w.stopped_at is None and (not host or w.host == host)
               and any(str(s.get("name", "")).startswith("slurm.") for s in w.slots)
               for w in queue.list_workers(db))


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
        check_data(cfg)
    except PreflightError as e:
        raise UserError(str(e)) from None
    from mfm.cli.foreground import train_in_foreground

    run_id, outcome, ckpt_dir = train_in_foreground(app, cfg, name, refs)
    from mfm.cli.progress import summary_table
    from mfm.text import one_line

    if outcome.unrecorded is not None:  # the records could not take the run's end
        if outcome.status == "completed":
            Console().print(summary_table(run_id, outcome.summary or {}))
        what = f"failed: {outcome.reason}" if outcome.status == "failed" else outcome.status
        click.echo(one_line(f"error: run {run_id} {what}; its end could not be recorded "
                            f"({outcome.unrecorded}): the records may show it running until "
                            f"an `mfm worker` serving {hide_password(app.db_target)} on this host "
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
