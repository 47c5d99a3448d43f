"""Rows to records and values to columns: the one place that says how a stored row becomes
a plain frozen record (``RunRecord``, ``DatasetSpecRecord``, ``ConfigRecord``), how JSON
columns and metric values are written and read, and which integers a column can hold.

Every module of the store that hands records out (the repository, the queue, sweeps, views)
converts through here; no ORM row leaves the store.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from mfm.store.models import Config, DatasetSpec, Run
from mfm.store.records import ConfigRecord, DatasetSpecRecord, RunRecord

__all__ = ["INT64_MIN", "INT64_MAX", "fits", "storable", "dumps", "loads", "metric_value",
           "stored_value", "run_record", "spec_record", "config_record"]

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def fits(n: Any) -> bool:
    """Can the records hold this integer (SQLite's and PostgreSQL's 64 bits)? Non-ints are
    left to the driver to judge. An id that does not fit names no record."""
    return not isinstance(n, int) or INT64_MIN <= n <= INT64_MAX


def storable(what: str, n: Any) -> Any:
    """``n`` if it fits, else ValueError naming ``what``."""
    if not fits(n):
        raise ValueError(f"{what} {n} is out of range (at most {INT64_MAX})")
    return n


def dumps(value: Any) -> str:
    """A JSON column's text."""
    return json.dumps(value)


def loads(text: str | None) -> Any:
    """A JSON column's value (None stays None)."""
    return None if text is None else json.loads(text)


def metric_value(v: float | None) -> float:
    """A stored metric value as read: NULL comes back as NaN."""
    return math.nan if v is None else float(v)


def stored_value(v: float) -> float | None:
    """What a metric value is written as: NaN as NULL (the same on every backend)."""
    return None if math.isnan(v) else v


def run_record(run: Run, latest: dict[str, float] | None = None, *,
               confusion: bool = True, tags: Sequence[str] = ()) -> RunRecord:
    """A run row as a record; ``latest`` (its latest metrics) and ``tags`` are read by the
    caller (they live in other tables). ``confusion=False``: the matrix was not loaded."""
    return RunRecord(
        id=run.id, name=run.name, status=run.status, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, host=run.host, pid=run.pid,
        device=run.device, config=json.loads(run.config_json), split_hash=run.split_hash,
        error=run.error, summary=loads(run.summary_json),
        class_counts=loads(run.class_counts_json),
        confusion=loads(run.confusion_json) if confusion else None,
        epochs_total=run.epochs_total, epoch=run.epoch, checkpoint_dir=run.checkpoint_dir,
        log_path=run.log_path, heartbeat_at=run.heartbeat_at,
        dataset_spec_id=run.dataset_spec_id, config_id=run.config_id,
        queued_at=run.queued_at, slot=run.slot, proc_start=run.proc_start,
        cancel_requested_at=run.cancel_requested_at,
        resume_requested=bool(run.resume_requested), attempt=run.attempt or 0,
        code_version=run.code_version, want_slot=run.want_slot, latest=dict(latest or {}),
        note=run.note, tags=tuple(tags), want_host=run.want_host,
        job_id=run.job_id, job_state=run.job_state, parent_id=run.parent_id)


def spec_record(row: DatasetSpec) -> DatasetSpecRecord:
    return DatasetSpecRecord(id=row.id, name=row.name, spec=json.loads(row.spec_json),
                             created_at=row.created_at)


def config_record(row: Config) -> ConfigRecord:
    return ConfigRecord(id=row.id, name=row.name, version=row.version,
                        config=json.loads(row.config_json), created_at=row.created_at)
