"""The run records: SQLite (WAL) or PostgreSQL, through SQLAlchemy 2.0.

Open a ``Database`` (a path or a SQLAlchemy URL) and read or write through the functions in
``mfm.store.repo`` (also re-exported here); they return plain frozen dataclasses. The schema
is migrated by Alembic (``mfm.store.migrate``). This package imports no torch, textual or
click.
"""

from mfm.store import migrate, queue, repo
from mfm.store.db import Database, StoreError, resolve_db_target
from mfm.store.records import (
    STATUSES,
    TERMINAL_STATUSES,
    ConfigRecord,
    DatasetSpecRecord,
    MetricPoint,
    RunRecord,
)
from mfm.store.repo import (
    create_run,
    delete_dataset_spec,
    delete_run,
    get_all_class_accuracy,
    get_class_accuracy,
    get_config,
    get_dataset_spec,
    get_epoch_series,
    get_run,
    get_step_series,
    latest_metrics,
    list_configs,
    list_dataset_specs,
    list_runs,
    log_epoch,
    log_step_metrics,
    mark_finished,
    mark_running,
    metric_keys,
    save_config,
    save_dataset_spec,
    update_run,
)
from mfm.store.schema import SCHEMA_VERSION

__all__ = [
    "Database", "StoreError", "resolve_db_target", "SCHEMA_VERSION", "STATUSES",
    "TERMINAL_STATUSES", "RunRecord", "MetricPoint", "DatasetSpecRecord", "ConfigRecord", "repo",
    "queue", "migrate",
    "create_run", "update_run", "mark_running", "mark_finished", "get_run", "list_runs",
    "delete_run", "log_step_metrics", "log_epoch", "get_step_series", "get_epoch_series",
    "get_class_accuracy", "get_all_class_accuracy", "latest_metrics", "metric_keys",
    "save_dataset_spec", "get_dataset_spec", "list_dataset_specs", "delete_dataset_spec",
    "save_config", "get_config", "list_configs",
]
