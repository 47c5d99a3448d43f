"""Callbacks that record a run in the store: step points (buffered), epochs, the end.

The records may go away for a while (a PostgreSQL server restarts, the network to it drops):
the run keeps training. Every write waits in order in ``pending`` until the records take it;
a failed write is retried with a growing pause (doubling from ``BACKOFF_MIN`` up to
``BACKOFF_MAX``) at the next flush, and nothing written before is touched (every write is an
upsert, so a write retried after a lost acknowledgement is harmless). The end of the run
waits for every pending write. Only records that stay unreachable for ``GIVE_UP_SECONDS``
end the run (failed, "could not write the records: ...").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from mfm.engine.callbacks import Callbacks, EpochResult, StartInfo
from mfm.store import Database, StoreError, repo

__all__ = ["StoreSink", "BACKOFF_MIN", "BACKOFF_MAX", "GIVE_UP_SECONDS"]

#: first pause after a failed write, seconds; doubled after each further failure
BACKOFF_MIN = 0.5
#: the longest pause between two tries
BACKOFF_MAX = 30.0
#: records unreachable this long end the run (its checkpoints stay: ``mfm resume``)
GIVE_UP_SECONDS = 600.0


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # the run's log (or the terminal of --headless)


class StoreSink(Callbacks):
    """Writes to the records. Step points are buffered and flushed at most every
    ``flush_seconds`` (and at each epoch end), which also refreshes the heartbeat."""

    def __init__(self, db: Database, run_id: int, *, flush_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 give_up_seconds: float | None = None, say: Callable[[str], None] = _say):
        self.db = db
        self.run_id = run_id
        self.flush_seconds = flush_seconds
        self.clock, self.sleep, self.say = clock, sleep, say
        self.give_up_seconds = give_up_seconds
        self.buffer: list[tuple[str, int, int, float]] = []
        self.last_flush = clock()
        self.pending: list[tuple[str, Callable[[], object]]] = []  # (what, write), in order
        self.failing_since: float | None = None
        self.pause = 0.0
        self.retry_at = 0.0
        self.retries = 0

    # -- the write queue -----------------------------------------------------------------------
    def _give_up_after(self) -> float:
        return GIVE_UP_SECONDS if self.give_up_seconds is None else self.give_up_seconds

    def _add(self, what: str, write: Callable[[], object]) -> None:
        self.pending.append((what, write))

    def drain(self, *, block: bool, within: float | None = None) -> None:
        """Write what is pending, in order. A failure leaves it pending for a later try
        (``block``: wait and try again here, as the end of a run must, for at most ``within``
        seconds if given); StoreError once the records have failed for longer than the give-up
        time."""
        deadline = None if within is None else self.clock() + within
        while self.pending:
            now = self.clock()
            if now < self.retry_at:
                if not block:
                    return
                if deadline is not None and self.retry_at > deadline:
                    raise StoreError(f"the records did not take {self.pending[0][0]} within "
                                     f"{within:g} s")
                self.sleep(self.retry_at - now)
            what, write = self.pending[0]
            try:
                write()
            except StoreError as e:
                now = self.clock()
                if self.failing_since is None:
                    self.failing_since = now
                    self.say(f"run {self.run_id}: the records did not take {what} ({e}); "
                             f"training goes on, retrying with backoff")
                self.retries += 1
                if now - self.failing_since >= self._give_up_after():
                    raise StoreError(f"{e} (retried for {now - self.failing_since:.0f} s)"
                                     ) from None
                self.pause = min(max(self.pause * 2, BACKOFF_MIN), BACKOFF_MAX)
                self.retry_at = now + self.pause
                if not block:
                    return
                continue
            self.pending.pop(0)
            if self.failing_since is not None:
                self.say(f"run {self.run_id}: the records take writes again after "
                         f"{self.clock() - self.failing_since:.0f} s ({self.retries} retries)")
                self.failing_since, self.pause, self.retry_at = None, 0.0, 0.0

    # -- callbacks -----------------------------------------------------------------------------
    def on_start(self, info: StartInfo) -> None:
        counts = info.class_counts()
        self._add("the run's start", lambda: repo.update_run(
            self.db, self.run_id, split_hash=info.split_hash, device=info.device,
            class_counts=counts, heartbeat_at=time.time()))
        self.drain(block=False)

    def on_step(self, epoch: int, step: int, values: dict[str, float] | None) -> None:
        if values:
            self.buffer.extend((k, step, epoch, v) for k, v in values.items())
        if self.clock() - self.last_flush >= self.flush_seconds:
            self.flush()

    def _take_buffer(self) -> None:
        if self.buffer:
            points, self.buffer = self.buffer, []
            self._add(f"{len(points)} step points",
                      lambda: repo.log_step_metrics(self.db, self.run_id, points))

    def flush(self, *, block: bool = False, within: float | None = None) -> None:
        """Hand the buffered step points to the write queue and write what the records take
        (``block``: all of it, waiting out an outage up to the give-up time or ``within``)."""
        self._take_buffer()
        if not any(what == "a heartbeat" for what, _ in self.pending):
            self._add("a heartbeat",
                      lambda: repo.update_run(self.db, self.run_id, heartbeat_at=time.time()))
        self.drain(block=block, within=within)
        self.last_flush = self.clock()

    def on_train_end(self, epoch: int) -> None:
        self.flush()  # before the checkpoint: its steps are not run again on resume

    def on_epoch(self, result: EpochResult) -> None:
        self.flush()
        self._add(f"epoch {result.epoch + 1}", lambda: repo.log_epoch(
            self.db, self.run_id, result.epoch, result.scalars, result.class_acc))
        self.drain(block=False)

    def on_epoch_restored(self, result: EpochResult) -> None:
        self._add(f"epoch {result.epoch + 1}", lambda: repo.log_epoch(
            self.db, self.run_id, result.epoch, result.scalars, result.class_acc))
        self.drain(block=False)

    def on_end(self, summary: dict[str, Any], confusion: list[list[int]]) -> None:
        self._take_buffer()
        self._add("the summary", lambda: repo.update_run(self.db, self.run_id, summary=summary,
                                                        confusion=confusion))
        self.flush(block=True)
