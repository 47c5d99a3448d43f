"""``mfm cancel``, ``mfm resume``, ``mfm logs``: acting on queued and running runs (the rules
are mfm.runner.control's; this module words them)."""

from __future__ import annotations

import sys
import time

import click

from mfm.cli.context import App, pass_app
from mfm.cli.control_words import cancelled_text, open_control, refused
from mfm.cli.errors import UserError
from mfm.runner.control import ControlError
from mfm.store.records import LIVE

__all__ = ["cancel", "resume", "logs"]


@click.command()
@click.argument("run_ids", metavar="ID...", type=int, nargs=-1, required=True)
@pass_app
def cancel(app: App, run_ids: tuple[int, ...]) -> None:
    """Cancel runs. A queued run is cancelled at once; a running one gets SIGTERM (its process
    group), finishes its current step, keeps its last epoch's checkpoint and is recorded
    cancelled; the supervisor kills it after a grace period if it does not stop. A run in a
    Slurm job has its job cancelled (scancel).

    \b
    Examples:
      mfm cancel 7
      mfm cancel 7 8 9
    """
    control = open_control(app)
    try:
        for done in control.cancel(run_ids):
            click.echo(cancelled_text(done))
    except ControlError as e:
        raise refused(e) from None


@click.command()
@click.argument("run_id", metavar="ID", type=int)
@click.option("--host", "host", default=None, metavar="HOST|any",
              help="Pin the resumed run to this host, or 'any' (default: the pin it had). "
                   "Another host needs the checkpoint: a runs folder shared by the hosts.")
@pass_app
def resume(app: App, run_id: int, host: str | None) -> None:
    """Queue a cancelled, failed or lost run again: it continues from its last checkpoint
    with its optimiser, schedule, modulation and random state.

    \b
    Examples:
      mfm resume 7
      mfm resume 7 --host any      # a run pinned to a host that is gone
    """
    control = open_control(app)
    try:
        done = control.resume(run_id, host=host)
    except ControlError as e:
        raise refused(e) from None
    if done.start_over:
        click.echo(f"run {run_id}: queued to start again from epoch 1/{done.epochs_total} (it "
                   f"recorded no epoch and has no checkpoint; attempt {done.attempt})")
    else:
        click.echo(f"run {run_id}: queued to resume after epoch "
                   f"{done.after_epoch}/{done.epochs_total} (attempt {done.attempt})")


@click.command()
@click.argument("run_id", metavar="ID", type=int)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the run finishes.")
@click.option("--tail", "tail_lines", type=click.IntRange(min=0), default=None,
              help="Only the last N lines.")
@pass_app
def logs(app: App, run_id: int, follow: bool, tail_lines: int | None) -> None:
    """Print a background run's log (what its process wrote).

    \b
    Examples:
      mfm logs 7
      mfm logs 7 --follow
    """
    control = open_control(app)
    try:
        rec = control.run(run_id)
    except ControlError as e:
        raise refused(e) from None
    path = control.log_path(rec)
    if not path.exists() and not follow:
        if rec.status in LIVE:
            raise UserError(f"ID: run {run_id} has no log yet (status {rec.status}; a "
                            "foreground --headless run prints to its terminal instead)")
        raise UserError(f"ID: run {run_id} has no log: it was trained in the foreground (mfm "
                        f"run --headless prints to its terminal); its results: mfm show "
                        f"{run_id}")
    offset = 0
    if path.exists() and tail_lines is not None:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        sys.stdout.write("".join(lines[-tail_lines:]))
        offset = path.stat().st_size
    while True:
        if path.exists():
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
                offset += len(chunk)
        if not follow:
            return
        rec = control.run(run_id)
        if rec.status not in LIVE:
            if path.exists() and path.stat().st_size > offset:
                continue  # print what came in with the end
            click.echo(f"-- run {run_id} is {rec.status}", err=True)
            return
        time.sleep(0.5)
