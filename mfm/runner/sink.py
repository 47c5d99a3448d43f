"""Callbacks that record a run in the store: step points (buffered), epochs, the end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mfm.engine.callbacks import Callbacks, EpochResult, StartInfo
from mfm.store import Database, repo

__all__ = ["StoreSink"]


class StoreSink(Callbacks):
    """Writes to the records. Step points are buffered and flushed at most every
    ``flush_seconds`` (and at each epoch end), which also refreshes the heartbeat."""

    def __init__(self, db: Database, run_id: int, *, flush_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.db = db
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.buffer: list[tuple[str, int, int, float]] = []
        self.last_flush = clock()

    def on_start(self, info: StartInfo) -> None:
        repo.update_run(self.db, self.run_id, split_hash=info.split_hash, device=info.device,
                        class_counts=info.class_counts(), heartbeat_at=time.time())

    def on_step(self, epoch: int, step: int, values: dict[str, float] | None) -> None:
        if values:
            self.buffer.extend((k, step, epoch, v) for k, v in values.items())
        if self.clock() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            repo.log_step_metrics(self.db, self.run_id, self.buffer)
            self.buffer = []
        repo.update_run(self.db, self.run_id, heartbeat_at=time.time())
        self.last_flush = self.clock()

    def on_train_end(self, epoch: int) -> None:
        self.flush()  # before the checkpoint: its steps are not run again on resume

    def on_epoch(self, result: EpochResult) -> None:
        self.flush()
        repo.log_epoch(self.db, self.run_id, result.epoch, result.scalars, result.class_acc)

    def on_epoch_restored(self, result: EpochResult) -> None:
        repo.log_epoch(self.db, self.run_id, result.epoch, result.scalars, result.class_acc)

    def on_end(self, summary: dict[str, Any], confusion: list[list[int]]) -> None:
        self.flush()
        repo.update_run(self.db, self.run_id, summary=summary, confusion=confusion)
