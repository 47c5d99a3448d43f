"""The run process: ``MFM_DB=TARGET python -m mfm.runner.child --checkpoint-dir DIR RUN_ID``.

Started by the supervisor in a session of its own, stdout/stderr to the run's log file. The
database comes through the environment (``MFM_DB``), not the command line: a PostgreSQL URL's
password would show in ``ps`` to every user of the host.
SIGTERM (from ``mfm cancel``) finishes the current step and records the run cancelled; its
last completed epoch is checkpointed, so ``mfm resume`` continues from there. SIGHUP is
ignored: closing a terminal never stops a run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mfm import runfiles
from mfm.engine.callbacks import Callbacks, EpochResult, StartInfo
from mfm.runner.execute import execute_run
from mfm.runner.preflight import PreflightError
from mfm.runner.run_options import method_options, resolve_init
from mfm.store import Database, StoreError, queue, repo

__all__ = ["main", "LogLines"]


class LogLines(Callbacks):
    """One plain line per event for the run's log file (`mfm logs ID --follow`)."""

    def on_start(self, info: StartInfo) -> None:
        print(f"start: device {info.device}, {sum(info.train_counts)} training images in "
              f"{len(info.classes)} classes (split {info.split_hash[:12]}), "
              f"{info.num_parameters} parameters, epochs {info.start_epoch + 1}.."
              f"{info.epochs}{_threads_text(info.threads)}", flush=True)

    def on_epoch(self, result: EpochResult) -> None:
        print(f"epoch {result.epoch + 1}: {_epoch_text(result)}", flush=True)

    def on_epoch_restored(self, result: EpochResult) -> None:
        print(f"checkpoint holds epoch {result.epoch + 1}: {_epoch_text(result)}", flush=True)


def _threads_text(threads: dict[str, Any] | None) -> str:
    if not threads:
        return ""
    return f", {threads['threads']} thread(s) ({threads['policy']})"


def _epoch_text(result: EpochResult) -> str:
    s = result.scalars
    groups = " ".join(f"{k} {100 * s[k]:.1f}" for k in ("many", "medium", "few") if k in s)
    return (f"train_loss {s['train_loss']:.4f} test_loss {s['test_loss']:.4f} "
            f"acc {100 * s['acc']:.2f} ({groups}) "
            f"{s['epoch_seconds']:.1f}s{' best' if result.is_best else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mfm.runner.child")
    ap.add_argument("--db", default=None,
                    help="records (default: $MFM_DB; prefer it: a command line shows in ps)")
    ap.add_argument("--checkpoint-dir", required=True)
    ap.add_argument("--slurm-job", default=None, metavar="JOB_ID",
                    help="the run is held by this Slurm job: SIGTERM or SIGUSR2 without a "
                         "cancel request (preemption, time limit, scontrol requeue) stops it "
                         "to resume when the job starts again, not cancelled")
    ap.add_argument("run_id", type=int)
    args = ap.parse_args(argv)

    stop = threading.Event()
    signals: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        signals.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.slurm_job:
        signal.signal(signal.SIGUSR2, on_signal)

    target = args.db or os.environ.get("MFM_DB")
    if not target:
        print("no database: set MFM_DB (or --db)", file=sys.stderr)
        return 2
    try:
        db = Database(target)
        rec = repo.get_run(db, args.run_id)
    except StoreError as e:
        print(f"error: {'--db: ' if e.field == 'db' else ''}{e}", file=sys.stderr)
        return 2
    if rec is None:
        print(f"no run {args.run_id} in {db.display}", file=sys.stderr)
        return 2
    if rec.checkpoint_dir != args.checkpoint_dir:  # queued elsewhere (another runs folder)
        repo.update_run(db, args.run_id, checkpoint_dir=args.checkpoint_dir)
    try:
        options = method_options(db, rec.config)
        # a resume takes its weights from its own last.pt: the parent is not needed again
        resuming = rec.resume_requested and runfiles.has_checkpoint(args.checkpoint_dir)
        init_from = None if resuming else resolve_init(db, rec.config)
    except PreflightError as e:
        queue.transition(db, args.run_id, "failed", allowed_from=("starting", "created"),
                         error=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{time.strftime('%H:%M:%S')} run {args.run_id}: {rec.method} on {rec.dataset}"
          f"{' (resuming)' if rec.resume_requested else ''}", flush=True)
    restart_note = None
    if args.slurm_job:
        def restart_note() -> str | None:
            """A stop without a cancel request is Slurm's: the job restarts, the run resumes."""
            now = repo.get_run(db, args.run_id)
            if now is None or now.cancel_requested_at is not None:
                return None
            done = "no epoch" if now.epoch is None else f"epoch {now.epoch + 1}"
            return (f"job {args.slurm_job} got {signals[0] if signals else 'a stop'} "
                    f"(preempted or at its time limit) after {done}; it resumes from its "
                    f"last checkpoint")
    outcome = execute_run(db, args.run_id, checkpoint_dir=Path(args.checkpoint_dir),
                          resume=rec.resume_requested, extra_callbacks=(LogLines(),), stop=stop,
                          method_options=options, init_from=init_from,
                          restart_note=restart_note)
    print(f"{time.strftime('%H:%M:%S')} run {args.run_id}: {outcome.status}"
          f"{': ' + outcome.reason if outcome.reason else ''}", flush=True)
    if outcome.error and outcome.error.strip() != (outcome.reason or ""):
        print(outcome.error, file=sys.stderr, flush=True)  # the traceback
    if outcome.unrecorded is not None:
        print(f"run {args.run_id}: its end could not be recorded ({outcome.unrecorded}); the "
              f"supervisor marks it lost once its heartbeat is stale", file=sys.stderr,
              flush=True)
        return 1
    return {"completed": 0, "cancelled": 0, "requeued": 0}.get(outcome.status, 1)


if __name__ == "__main__":
    sys.exit(main())
