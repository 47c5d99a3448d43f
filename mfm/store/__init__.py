"""The run records: SQLite (WAL) or PostgreSQL, through SQLAlchemy 2.0.

Open a ``Database`` (a path or a SQLAlchemy URL) and read or write through the functions in
``mfm.store.repo`` (also re-exported here); they return plain frozen dataclasses. The schema
is migrated by Alembic (``mfm.store.migrate``; ``mfm.store.admin`` for ``mfm db``). Errors
are the typed, one-line ``StoreError`` family of ``mfm.store.errors``, in neutral words with
a ``field`` a front end renders. This package imports no torch, textual or click. Names load
on first use, so that the light modules (``records``: statuses and record types; ``paths``:
where files live; ``errors``) import without SQLAlchemy — the TUI's first frame needs them
before any database is opened.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Database", "StoreError", "QueueError", "NoSuchRun", "RunStateError", "NewerSchema",
    "OlderSchema", "resolve_db_target", "SCHEMA_VERSION", "STATUSES",
    "TERMINAL_STATUSES", "RunRecord", "MetricPoint", "DatasetSpecRecord", "ConfigRecord", "repo",
    "queue", "migrate", "admin", "errors",
    "create_run", "update_run", "get_run", "list_runs",
    "delete_run", "log_step_metrics", "log_epoch", "get_step_series", "get_epoch_series",
    "get_class_accuracy", "get_all_class_accuracy", "latest_metrics", "metric_keys",
    "save_dataset_spec", "get_dataset_spec", "list_dataset_specs", "delete_dataset_spec",
    "save_config", "get_config", "list_configs",
]

_SUBMODULES = {"repo", "queue", "migrate", "admin", "errors", "faults", "convert", "sweeps",
               "views", "records", "paths", "db", "schema", "models", "hashing", "fsinfo"}
_HOME = {
    "Database": "db", "resolve_db_target": "db",
    "StoreError": "errors", "QueueError": "errors", "NoSuchRun": "errors",
    "RunStateError": "errors", "NewerSchema": "errors", "OlderSchema": "errors",
    "SCHEMA_VERSION": "schema",
    "STATUSES": "records", "TERMINAL_STATUSES": "records", "RunRecord": "records",
    "MetricPoint": "records", "DatasetSpecRecord": "records", "ConfigRecord": "records",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"mfm.store.{name}")
    if name in _HOME:
        home = _HOME[name]
    elif name in __all__:
        home = "repo"
    else:
        raise AttributeError(f"module 'mfm.store' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mfm.store.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
