"""``mfm cancel``, ``mfm resume``, ``mfm logs``: acting on queued and running runs."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.runner.procs import host_name, is_alive, signal_group
from mfm.store import Database, RunRecord, queue, repo
from mfm.store.records import LIVE, RESUMABLE
from mfm.text import one_line

__all__ = ["cancel", "resume", "logs"]


@click.command()
@click.argument("run_ids", metavar="ID...", type=int, nargs=-1, required=True)
@pass_app
def cancel(app: App, run_ids: tuple[int, ...]) -> None:
    """Cancel runs. A queued run is cancelled at once; a running one gets SIGTERM (its process
    group), finishes its current step, keeps its last epoch's checkpoint and is recorded
    cancelled; the supervisor kills it after a grace period if it does not stop.

    \b
    Examples:
      mfm cancel 7
      mfm cancel 7 8 9
    """
    db = app.open_db()
    for run_id in run_ids:  # check every id first: an unknown one changes nothing
        rec = _require(db, run_id)
        if rec.status not in LIVE:
            raise UserError(f"ID: run {run_id} is already {rec.status}; nothing to cancel")
    host = host_name()
    for run_id in run_ids:
        try:
            what = queue.request_cancel(db, run_id)
        except queue.QueueError as e:
            raise UserError(str(e)) from None
        if what == "cancelled":
            click.echo(f"run {run_id}: cancelled (it was queued)")
            continue
        rec = _require(db, run_id)
        if rec.job_id:
            click.echo(_cancel_job(db, rec))
            continue
        if rec.host == host and rec.pid and is_alive(rec.pid, rec.proc_start):
            signal_group(rec.pid, signal.SIGTERM)  # the supervisor escalates if needed
            click.echo(f"run {run_id}: SIGTERM sent; it stops after its current step")
        else:
            click.echo(f"run {run_id}: cancel requested; the supervisor on {rec.host} acts on it")


def _cancel_job(db: Any, rec: Any) -> str:
    """A run held by a Slurm job: scancel it here when Slurm's commands are here (else the
    Slurm worker does); a job that has not started its run yet is recorded cancelled now."""
    import shutil

    if not shutil.which("scancel"):
        return (f"run {rec.id}: cancel requested; the Slurm worker cancels job {rec.job_id}")
    from mfm.runner.slurm import scancel

    why = scancel(rec.job_id)
    if why is not None:
        return (f"run {rec.id}: cancel requested; scancel {rec.job_id} failed ({why}): the "
                f"Slurm worker tries again")
    if rec.status == "starting" and queue.transition(
            db, rec.id, "cancelled", allowed_from=("starting",),
            error=f"cancelled: Slurm job {rec.job_id} cancelled before the run started"):
        return f"run {rec.id}: cancelled (Slurm job {rec.job_id} had not started it)"
    return (f"run {rec.id}: Slurm job {rec.job_id} cancelled (scancel); the run stops after "
            f"its current step and keeps its last epoch's checkpoint")


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
    from mfm.runner.launch import serving, start_detached_supervisor
    from mfm.runner.submit import DEFAULT_SUPERVISOR_ARGS

    db = app.open_db()
    before = repo.get_run(db, run_id)
    # another host serving this database may see a checkpoint this one cannot (its own
    # disk): then the resume waits in the queue for a host that can read it (mfm runs says so)
    elsewhere = any(w.host != host_name() and w.stopped_at is None
                    for w in queue.list_workers(db))
    if (before is not None and before.status in RESUMABLE and before.epoch is not None
            and not elsewhere):
        _check_checkpoint(run_id, before.checkpoint_dir, before.epoch)
    pin: dict[str, Any] = {}
    if host is not None:
        from mfm.runner.launch import SlotWishError, check_host_wish

        try:
            pin["want_host"] = check_host_wish(host, db)[0] or None
        except SlotWishError as e:
            raise UserError(f"--{e}") from None
    try:
        rec = queue.request_resume(db, run_id, **pin)
    except queue.QueueError as e:
        raise UserError(str(e)) from None
    done = 0 if rec.epoch is None else rec.epoch + 1
    start_over = rec.epoch is None and not _has_checkpoint(rec.checkpoint_dir)
    if rec.want_host in (None, host_name()) and serving(app.db_target, app.runs_root()) is None:
        start_detached_supervisor(app.db_target, app.runs_root(), list(DEFAULT_SUPERVISOR_ARGS))
    if start_over:
        click.echo(f"run {run_id}: queued to start again from epoch 1/{rec.epochs_total} (it "
                   f"recorded no epoch and has no checkpoint; attempt {rec.attempt})")
    else:
        click.echo(f"run {run_id}: queued to resume after epoch {done}/{rec.epochs_total} "
                   f"(attempt {rec.attempt})")


#: the checkpoint a resume continues from (mfm.engine.training.LAST; the CLI does not load torch)
LAST_CHECKPOINT = "last.pt"


def _has_checkpoint(checkpoint_dir: str | None) -> bool:
    return checkpoint_dir is not None and (Path(checkpoint_dir) / LAST_CHECKPOINT).is_file()


def _require(db: Database, run_id: int) -> RunRecord:
    """The run, or a one-line UserError naming the database."""
    rec = repo.get_run(db, run_id)
    if rec is None:
        raise UserError(f"ID: no run {run_id} in {db.display} (see mfm runs)")
    return rec


def _check_checkpoint(run_id: int, checkpoint_dir: str | None, epoch: int) -> None:
    """Refuse a resume that would train from scratch over recorded epochs."""
    if _has_checkpoint(checkpoint_dir):
        return
    where = (Path(checkpoint_dir) / LAST_CHECKPOINT) if checkpoint_dir else "no checkpoint folder"
    raise UserError(one_line(
        f"ID: run {run_id} cannot resume: its checkpoint ({where}) is missing, and training "
        f"from scratch would overwrite its {epoch + 1} recorded epoch(s); start a new run "
        f"instead"))


def _log_path(app: App, run_id: int) -> Path:
    db = app.open_db()
    rec = repo.get_run(db, run_id)
    if rec is None:
        raise UserError(f"ID: no run {run_id} in {db.display} (see mfm runs)")
    if rec.log_path:
        return Path(rec.log_path)
    return app.runs_root() / str(run_id) / "run.log"


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
    path = _log_path(app, run_id)
    db = app.open_db()
    if not path.exists():
        rec = _require(db, run_id)
        if not follow:
            raise UserError(f"ID: run {run_id} has no log yet (status {rec.status}; foreground "
                            "--headless runs print to their terminal instead)")
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
        rec = _require(db, run_id)
        if rec.status not in LIVE:
            if path.exists() and path.stat().st_size > offset:
                continue  # print what came in with the end
            click.echo(f"-- run {run_id} is {rec.status}", err=True)
            return
        time.sleep(0.5)
