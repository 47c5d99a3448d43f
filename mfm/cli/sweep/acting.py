"""``mfm sweep cancel`` and ``mfm sweep resume`` (the rules are mfm.runner.control's)."""

from __future__ import annotations

import click

from mfm.cli.context import App, pass_app
from mfm.cli.control_words import open_control, refused
from mfm.runner.control import ControlError


@click.command("cancel")
@click.argument("ref", metavar="ID|NAME")
@pass_app
def cancel_cmd(app: App, ref: str) -> None:
    """Cancel every queued or running run of a sweep (finished runs stay); a run in a Slurm
    job has its job cancelled.

    \b
    Example:
      mfm sweep cancel 1
    """
    try:
        done = open_control(app).cancel_sweep(ref)
    except ControlError as e:
        raise refused(e) from None
    click.echo(f"sweep {done.sweep_id}: cancel sent to {len(done.runs)} runs")


@click.command("resume")
@click.argument("ref", metavar="ID|NAME")
@pass_app
def resume_cmd(app: App, ref: str) -> None:
    """Queue every failed, cancelled or lost run of a sweep again (each continues from its
    last checkpoint, or starts afresh if it never finished an epoch).

    \b
    Example:
      mfm sweep resume 1
    """
    try:
        done = open_control(app).resume_sweep(ref)
    except ControlError as e:
        raise refused(e) from None
    for run_id, status, why in done.skipped:
        click.echo(f"run {run_id}: left as {status}: {why}", err=True)
    click.echo(f"sweep {done.sweep_id}: {len(done.run_ids)} runs queued again")
