"""Execute one recorded run in this process: the shared body of ``mfm run --headless`` and
of the background run process. The record must exist; this function owns its final state."""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mfm import runfiles
from mfm.config import Config, ConfigError, config_from_dict
from mfm.crashlog import describe_os_error
from mfm.engine.callbacks import Callbacks, Tee
from mfm.runner.procs import host_name, process_start_time
from mfm.store import Database, StoreError, queue, repo
from mfm.text import one_line

__all__ = ["Outcome", "StopFlag", "Heartbeat", "execute_run"]


@dataclass(frozen=True)
class Outcome:
    """How the run ended in this process. ``error`` is the text recorded with the run (one
    line for faults a user can act on, a traceback otherwise); ``reason`` is one line for a
    terminal. ``unrecorded`` is None when the final state reached the records, else one line
    saying why it could not be written (the records may still show the run active)."""

    status: str  # completed | failed | cancelled | requeued (waits for its job to restart)
    summary: dict[str, Any] | None
    error: str | None
    reason: str | None = None
    unrecorded: str | None = None


class StopFlag(Callbacks):
    """should_stop() turns true once ``event`` is set (SIGTERM, Ctrl-C from a handler)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def should_stop(self) -> bool:
        return self.event.is_set()


class Heartbeat:
    """Refreshes runs.heartbeat_at every ``every`` seconds from a thread, so a long step or
    evaluation never makes a live run look dead."""

    def __init__(self, db: Database, run_id: int, every: float = 5.0):
        self.db, self.run_id, self.every = db, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                repo.update_run(self.db, self.run_id, heartbeat_at=time.time())
            except Exception:  # noqa: BLE001 — a busy database must not kill the run
                pass


def execute_run(db: Database, run_id: int, *, checkpoint_dir: Path, resume: bool,
                extra_callbacks: tuple[Callbacks, ...] = (), stop: threading.Event | None = None,
                method_options: dict[str, Any] | None = None,
                init_from: Path | None = None,
                on_started: Callable[[Config, str], None] | None = None,
                restart_note: Callable[[], str | None] | None = None) -> Outcome:
    """Train the recorded run ``run_id`` and record its final state.

    Never raises for a fault of the run or of the records once the record was read: a
    diverged run, a full disk, a failed database write all end as ``failed`` with one line
    saying what happened. If even that final state cannot be written, the returned
    ``Outcome.unrecorded`` says why (a supervisor serving this database marks the run lost
    once its heartbeat is stale).

    ``resume``: continue from ``checkpoint_dir/last.pt``. A run with no recorded epoch and no
    checkpoint starts again from the beginning; one with recorded epochs and no checkpoint
    fails (``fit`` refuses to train over its records).

    ``init_from``: the parent's checkpoint file a stage-2 run starts from (``train.init_from``,
    resolved and checked by ``mfm.runner.run_options.resolve_init``); a resume takes
    everything from its own ``last.pt`` instead.

    ``restart_note``: asked when ``stop`` ended the run; a line means the stop was its
    scheduler's (a Slurm job preempted or at its time limit, to be started again): the run is
    recorded as waiting for its job to restart, to resume from its last checkpoint
    (``Outcome.status`` "requeued"); None means a cancel.
    """
    from mfm.engine import CheckpointMissing, Diverged, RunStopped
    from mfm.engine.checkpoint import CheckpointDamaged
    from mfm.engine.stages import ParentMismatch

    rec = repo.get_run(db, run_id)
    if rec is None:
        raise ValueError(f"no run {run_id}")
    stop = stop or threading.Event()
    # torch and the engine load here, not at import, so that listing commands stay fast.
    from mfm.runner.sink import StoreSink

    sink = StoreSink(db, run_id)
    owner = runfiles.foreign_owner(checkpoint_dir, db.identity)
    if owner is not None:  # a copied database: never touch the original's folder
        return _record_failure(db, run_id, sink, one_line(
            f"its folder {checkpoint_dir} belongs to the records at {owner} (these records are "
            f"a copy); nothing in it was read or written"))
    # nothing done and nothing recorded: start again
    resume = resume and (rec.epoch is not None or runfiles.has_checkpoint(checkpoint_dir))
    try:
        result = _train(db, rec.id, rec.config, sink, checkpoint_dir=checkpoint_dir,
                        resume=resume, callbacks=(StopFlag(stop), *extra_callbacks),
                        stop=stop, method_options=method_options, init_from=init_from,
                        on_started=on_started)
    except (KeyboardInterrupt, RunStopped):
        _flush_quietly(sink)
        note = restart_note() if restart_note is not None else None
        if note is not None:
            return _record_restart(db, run_id, note)
        return _record_end(db, run_id, Outcome("cancelled", None, None))
    except (Diverged, CheckpointMissing, CheckpointDamaged, ParentMismatch) as e:
        return _record_failure(db, run_id, sink, one_line(e))
    except StoreError as e:
        return _record_failure(db, run_id, sink, one_line(f"could not write the records: {e}"))
    except OSError as e:  # a full disk (checkpoint), a missing or unreadable file
        return _record_failure(db, run_id, sink, describe_os_error(e))
    except (Exception, ConfigError) as e:  # noqa: BLE001 — recorded with the traceback
        return _record_failure(db, run_id, sink, one_line(f"{type(e).__name__}: {e}"),
                               error=traceback.format_exc())
    if result is None:
        return Outcome("cancelled", None, None)  # cancelled before it could start
    # the summary and confusion matrix were recorded by the sink's on_end, inside fit
    return _record_end(db, run_id, Outcome("completed", result.summary, None))


def _train(db: Database, run_id: int, config: dict[str, Any], sink: Callbacks, *,
           checkpoint_dir: Path, resume: bool, callbacks: tuple[Callbacks, ...],
           stop: threading.Event, method_options: dict[str, Any] | None,
           init_from: Path | None, on_started: Callable[[Config, str], None] | None) -> Any:
    """Mark the run running and train it; the fit result, or None when it was cancelled
    before it could start. Raises what ``fit`` raises."""
    from mfm.data import build_data
    from mfm.engine import RunStopped, fit, resolve_device, seed_everything

    cfg = config_from_dict(config)
    device = resolve_device(cfg.device)
    if not start_running(db, run_id, device=str(device)):
        return None
    runfiles.claim_folder(checkpoint_dir, db.identity)
    if on_started is not None:
        on_started(cfg, str(device))
    with Heartbeat(db, run_id):
        seed_everything(cfg.seed, device)
        data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                          eval_batch_size=cfg.train.eval_batch_size, device=device,
                          seed=cfg.seed)
        if stop.is_set():
            raise RunStopped(0)
        return fit(cfg, data, device=device, callbacks=Tee(sink, *callbacks),
                   checkpoint_dir=checkpoint_dir, resume=resume,
                   method_options=method_options, init_from=init_from)


def _record_failure(db: Database, run_id: int, sink: Callbacks, reason: str, *,
                    error: str | None = None) -> Outcome:
    """The run failed: its pending points flushed, then ``failed`` recorded with ``error``
    (a traceback) or the one-line ``reason``."""
    _flush_quietly(sink)
    return _record_end(db, run_id, Outcome("failed", None, error or reason, reason=reason))


#: pause before the first retry of a final write that failed (doubled for each further one)
RETRY_PAUSE = 1.0
#: tries of a final write (1 + 2 + 4 + 8 + 16 s of pauses: a server restart is waited out)
RETRY_TRIES = 6
#: how long the end of a failed or cancelled run waits for its pending step points
END_FLUSH_SECONDS = 20.0

#: the states a run process may end from: before start_running (created, starting) or after
_ENDS_FROM = ("created", "starting", "running")


def _retry(write: Callable[[], object]) -> object:
    """``write()``, tried again with a doubling pause while the records fail (StoreError)."""
    pause = RETRY_PAUSE
    for _ in range(RETRY_TRIES - 1):
        try:
            return write()
        except StoreError:
            time.sleep(pause)
            pause *= 2
    return write()


def _flush_quietly(sink: Callbacks) -> None:
    """Write the buffered and pending step points if the records take them within
    END_FLUSH_SECONDS; the end matters more."""
    try:
        sink.flush(block=True, within=END_FLUSH_SECONDS)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass


def _record_end(db: Database, run_id: int, outcome: Outcome) -> Outcome:
    """Write the run's final state; on a database error, the outcome says it is unrecorded.
    A transition refused because the run is no longer active (a supervisor already decided
    it, e.g. lost or killed after a cancel) leaves that decision standing."""
    try:
        _retry(lambda: queue.transition(db, run_id, outcome.status, allowed_from=_ENDS_FROM,
                                        error=outcome.error))
    except StoreError as e:
        return replace(outcome, unrecorded=one_line(e))
    return outcome


def _record_restart(db: Database, run_id: int, note: str) -> Outcome:
    """The run stopped for its job's restart: recorded as waiting for it (not cancelled)."""
    try:
        _retry(lambda: queue.stop_for_restart(db, run_id, note))
    except StoreError as e:
        return Outcome("requeued", None, None, reason=note, unrecorded=one_line(e))
    return Outcome("requeued", None, None, reason=note)


def start_running(db: Database, run_id: int, *, device: str) -> bool:
    """created/starting → running, with this process's identity. False if the run is no
    longer waiting to start (cancelled meanwhile)."""
    if not queue.transition(db, run_id, "running", allowed_from=("created", "starting")):
        return False
    pid = os.getpid()
    now = time.time()
    repo.update_run(db, run_id, host=host_name(), pid=pid,
                    proc_start=process_start_time(pid), device=device, started_at=now,
                    heartbeat_at=now)
    return True
