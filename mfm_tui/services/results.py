"""What mfm-tui's services return: small frozen dataclasses of plain values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mfm.store.records import RunLink, RunRecord
    from mfm.store.sweeps import SweepRecord
    from mfm.store.views import Fingerprint
    from mfm.sweeps.table import CellRun


@dataclass(frozen=True)
class RunSeries:
    """New points of one run since the cursors the caller passed (see ``run_series``)."""

    run: RunRecord
    steps: dict[str, list[tuple[int, float]]]      # key -> [(step, value)] after the cursor
    epochs: dict[str, list[tuple[int, float]]]     # key -> [(epoch, value)] after the cursor
    class_acc: list[float] | None                  # the latest per-class vector, if new
    log_lines: list[str]                           # new log lines
    log_offset: int                                # byte offset to pass next time
    parent: RunLink | None = None                  # the run it starts from (None: none, or
                                                   # no longer in the records: run.parent_id)
    children: tuple[RunLink, ...] = ()             # the runs that start from it


@dataclass(frozen=True)
class StatusInfo:
    supervisor: dict[str, Any] | None   # the lock holder's info, None when nobody serves
    slots_busy: int
    slots_total: int
    gpus: list[dict[str, float]]        # per GPU: index, util, mem_used, mem_total
    counts: dict[str, int]              # runs by status


@dataclass(frozen=True)
class QueuedRuns:
    run_ids: tuple[int, ...]
    supervisor: str                     # what happened about the supervisor, one line


@dataclass(frozen=True)
class SweepDetail:
    """One sweep's cells as the arm table needs them (``mfm.sweeps.table.CellRun``)."""

    sweep_id: int
    fingerprint: Fingerprint                # pass it to the next poll: unchanged, no re-read
    cells: list[CellRun]                    # class_acc left None: see ``class_acc``
    class_acc: dict[int, list[float]]       # run id -> final per-class accuracy, newly read


@dataclass(frozen=True)
class SweepsPoll:
    sweeps: list[SweepRecord]               # every sweep with its progress, newest first
    detail: SweepDetail | None              # the chosen sweep's cells; None when unchanged
    gone: bool = False                      # the chosen sweep is no longer in the records


@dataclass(frozen=True)
class QueuedSweep:
    sweep_id: int
    name: str
    new_run_ids: tuple[int, ...]            # runs queued for cells nothing answered
    resumed: tuple[int, ...]                # interrupted runs queued again to resume
    summary: str                            # the plan in one line
    supervisor: str                         # what happened about the supervisor, one line
