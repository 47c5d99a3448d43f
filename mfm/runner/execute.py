"""Execute one recorded run in this process: the shared body of ``mfm run --headless`` and
of the background run process. The record must exist; this function owns its final state."""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mfm.config import Config, ConfigError, config_from_dict
from mfm.engine.callbacks import Callbacks, Tee
from mfm.runner.procs import process_start_time
from mfm.store import Database, queue, repo

__all__ = ["Outcome", "StopFlag", "Heartbeat", "execute_run"]


@dataclass(frozen=True)
class Outcome:
    status: str  # completed | failed | cancelled
    summary: dict | None
    error: str | None


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

    def __enter__(self) -> "Heartbeat":
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
                method_options: dict | None = None,
                on_started: Callable[[Config, str], None] | None = None) -> Outcome:
    """Train the recorded run ``run_id`` and record its final state."""
    # torch and the engine load here, not at import, so that listing commands stay fast.
    from mfm.runner.sink import StoreSink
    from mfm.data import build_data
    from mfm.engine import RunStopped, fit, resolve_device, seed_everything

    rec = repo.get_run(db, run_id)
    if rec is None:
        raise ValueError(f"no run {run_id}")
    stop = stop or threading.Event()
    sink = StoreSink(db, run_id)
    try:
        cfg = config_from_dict(rec.config)
        device = resolve_device(cfg.device)
        if not start_running(db, run_id, device=str(device)):
            return Outcome("cancelled", None, None)  # cancelled before it could start
        if on_started is not None:
            on_started(cfg, str(device))
        with Heartbeat(db, run_id):
            seed_everything(cfg.seed, device)
            data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                              eval_batch_size=cfg.train.eval_batch_size, device=device,
                              seed=cfg.seed)
            if stop.is_set():
                raise RunStopped(0)
            result = fit(cfg, data, device=device,
                         callbacks=Tee(sink, StopFlag(stop), *extra_callbacks),
                         checkpoint_dir=checkpoint_dir, resume=resume,
                         method_options=method_options)
    except (KeyboardInterrupt, RunStopped):
        sink.flush()
        queue.transition(db, run_id, "cancelled")
        return Outcome("cancelled", None, None)
    except (Exception, ConfigError):  # noqa: BLE001 — recorded with the traceback
        err = traceback.format_exc()
        try:
            sink.flush()
        except Exception:  # noqa: BLE001
            pass
        queue.transition(db, run_id, "failed", error=err)
        return Outcome("failed", None, err)
    repo.update_run(db, run_id, summary=result.summary)
    queue.transition(db, run_id, "completed")
    return Outcome("completed", result.summary, None)


def start_running(db: Database, run_id: int, *, device: str) -> bool:
    """created/starting → running, with this process's identity. False if the run is no
    longer waiting to start (cancelled meanwhile)."""
    if not queue.transition(db, run_id, "running", allowed_from=("created", "starting")):
        return False
    pid = os.getpid()
    now = time.time()
    repo.update_run(db, run_id, host=socket.gethostname(), pid=pid,
                    proc_start=process_start_time(pid), device=device, started_at=now,
                    heartbeat_at=now)
    return True
