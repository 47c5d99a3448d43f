"""Repository functions: every read and write of runs, their metrics and labels, and the
named dataset specs and configs goes through here.

Each function takes the ``Database`` first, runs in one ``session_scope`` (one transaction)
and returns plain frozen dataclasses, dicts or lists; no session or ORM row leaves. A NaN
metric value is written as NULL on every backend (SQLite would turn it into NULL anyway;
PostgreSQL would keep NaN, which sorts above every number there), so the records hold the
same values on both, and NULL comes back as NaN.

An id beyond SQLite's 64-bit integers names no record: reads find nothing, writes raise
``NoSuchRun`` ("no run N") as for any other missing id (the driver would raise
OverflowError). Names are checked with :func:`mfm.text.check_name` before anything is
written.

One module per job, all re-exported here (``from mfm.store import repo; repo.get_run(db,
1)``): :mod:`.runs`, :mod:`.labels` (tags, notes), :mod:`.metrics`, :mod:`.specs` (dataset
specs, named configs); rows become records in :mod:`mfm.store.convert`.
"""

from __future__ import annotations

from mfm.store.records import STATUSES, TERMINAL_STATUSES
from mfm.store.repo.labels import NOTE_MAX, TAG_MAX, all_tags, check_tag, set_note, set_tags
from mfm.store.repo.metrics import (
    get_all_class_accuracy,
    get_class_accuracy,
    get_epoch_series,
    get_step_series,
    latest_metrics,
    log_epoch,
    log_step_metrics,
    metric_keys,
)
from mfm.store.repo.runs import (
    UPDATABLE_RUN_FIELDS,
    children,
    create_run,
    delete_run,
    get_run,
    list_runs,
    run_link,
    update_run,
)
from mfm.store.repo.specs import (
    delete_dataset_spec,
    get_config,
    get_dataset_spec,
    list_configs,
    list_dataset_specs,
    save_config,
    save_dataset_spec,
)

__all__ = [
    "STATUSES", "TERMINAL_STATUSES", "UPDATABLE_RUN_FIELDS",
    "create_run", "update_run", "get_run", "list_runs", "delete_run", "children", "run_link",
    "TAG_MAX", "NOTE_MAX", "check_tag", "set_tags", "set_note", "all_tags",
    "log_step_metrics", "log_epoch", "get_step_series", "get_epoch_series",
    "get_class_accuracy", "get_all_class_accuracy", "latest_metrics", "metric_keys",
    "save_dataset_spec", "get_dataset_spec", "list_dataset_specs", "delete_dataset_spec",
    "save_config", "get_config", "list_configs",
]
