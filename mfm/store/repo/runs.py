"""Runs: record one (its resolved config frozen from then on), update its columns, read one
or a listing (with its latest metrics and tags), a run's children (the runs that start from
its weights), delete one with everything it logged."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import defer

from mfm.store.convert import dumps, fits, run_record, storable
from mfm.store.db import Database
from mfm.store.errors import NoSuchRun, StoreError
from mfm.store.hashing import config_hash
from mfm.store.models import Run, RunTag
from mfm.store.records import RunLink, RunRecord, check_status, parent_of
from mfm.store.repo.common import check_record_name, latest_by_run, require_run, tags_by_run

__all__ = ["UPDATABLE_RUN_FIELDS", "create_run", "update_run", "get_run", "list_runs",
           "delete_run", "children", "run_link"]

_PLAIN_FIELDS = frozenset({
    "status", "started_at", "finished_at", "host", "pid", "device", "split_hash", "error",
    "checkpoint_dir", "log_path", "epoch", "heartbeat_at", "name",
    "queued_at", "slot", "proc_start", "cancel_requested_at", "resume_requested", "attempt",
    "code_version", "want_slot", "job_id", "job_state",
})
_JSON_FIELDS = {"summary": "summary_json", "class_counts": "class_counts_json",
                "confusion": "confusion_json"}
UPDATABLE_RUN_FIELDS = tuple(sorted(_PLAIN_FIELDS | _JSON_FIELDS.keys()))


def create_run(db: Database, *, config: dict[str, Any], epochs_total: int,
               name: str | None = None, status: str = "created",
               dataset_spec_id: int | None = None, config_id: int | None = None) -> int:
    """Record a new run with its resolved config (frozen from now on); returns its id. Its
    parent (``runs.parent_id``) is the run ``train.init_from`` names, if any."""
    check_status(status)
    if name is not None:
        check_record_name(name)
    if not fits(dataset_spec_id):
        raise StoreError(f"no dataset spec {dataset_spec_id}")
    if not fits(config_id):
        raise StoreError(f"no config {config_id}")
    storable("epochs_total", int(epochs_total))
    run = Run(name=name, status=status, created_at=time.time(), config_json=dumps(config),
              config_hash=config_hash(config), parent_id=parent_of(config),
              epochs_total=int(epochs_total), dataset_spec_id=dataset_spec_id,
              config_id=config_id)
    with db.session_scope() as session:
        session.add(run)
        session.flush()
        return run.id


def update_run(db: Database, run_id: int, **fields: Any) -> None:
    """Set some of a run's columns (see ``UPDATABLE_RUN_FIELDS``); dict/list fields
    (summary, class_counts, confusion) are stored as JSON."""
    unknown = sorted(set(fields) - _PLAIN_FIELDS - _JSON_FIELDS.keys())
    if unknown:
        raise ValueError(f"cannot update run field(s) {', '.join(unknown)} "
                         f"(updatable: {', '.join(UPDATABLE_RUN_FIELDS)})")
    if "status" in fields:
        check_status(fields["status"])
    if fields.get("name") is not None:
        check_record_name(fields["name"])
    if not fits(run_id):
        raise NoSuchRun(run_id)
    values = {_JSON_FIELDS.get(k, k): (dumps(v) if k in _JSON_FIELDS and v is not None else v)
              for k, v in fields.items()}
    if isinstance(values.get("resume_requested"), bool):  # a 0/1 column (PostgreSQL: bigint)
        values["resume_requested"] = int(values["resume_requested"])
    with db.session_scope() as session:
        if not values:
            require_run(session, run_id)
            return
        result = session.execute(update(Run).where(Run.id == run_id).values(**values)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NoSuchRun(run_id)


def get_run(db: Database, run_id: int) -> RunRecord | None:
    if not fits(run_id):
        return None
    with db.session_scope(read_only=True) as session:
        run = session.get(Run, run_id)
        if run is None:
            return None
        return run_record(run, latest_by_run(session, [run_id]).get(run_id),
                          tags=tags_by_run(session, [run_id]).get(run_id, ()))


def list_runs(db: Database, *, status: str | None = None, limit: int | None = None,
              confusion: bool = True, tag: str | None = None) -> list[RunRecord]:
    """Runs newest first, each with ``latest`` and ``tags`` filled: three queries, whatever
    the count. ``tag``: only runs carrying it.
    ``confusion=False`` leaves the final confusion matrices unread (``None``): the largest
    column by far (C² numbers per run), which a table of runs never shows. A ``limit``
    beyond SQLite's integers means no limit."""
    if status is not None:
        check_status(status)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    if limit is not None and not fits(limit):
        limit = None
    query = select(Run).order_by(Run.created_at.desc(), Run.id.desc())
    if status is not None:
        query = query.where(Run.status == status)
    if tag is not None:
        query = query.where(Run.id.in_(select(RunTag.run_id).where(RunTag.tag == tag)))
    if limit is not None:
        query = query.limit(limit)
    with db.session_scope(read_only=True) as session:
        loaded = query if confusion else query.options(defer(Run.confusion_json))
        runs = session.scalars(loaded).all()
        if not runs:
            return []
        # The same filtered, limited query as a subquery: no parameter-count limit on IN.
        ids = query.with_only_columns(Run.id)
        latest = latest_by_run(session, ids)
        tags = tags_by_run(session, ids)
        return [run_record(r, latest.get(r.id), confusion=confusion, tags=tags.get(r.id, ()))
                for r in runs]


def children(db: Database, run_id: int) -> list[RunLink]:
    """The runs that start from ``run_id``'s weights (their ``train.init_from``), oldest
    first: one index lookup."""
    if not fits(run_id):
        return []
    with db.session_scope(read_only=True) as session:
        rows = session.execute(select(Run.id, Run.name, Run.status)
                               .where(Run.parent_id == run_id).order_by(Run.id)).all()
    return [RunLink(id=rid, name=name, status=status) for rid, name, status in rows]


def run_link(db: Database, run_id: int) -> RunLink | None:
    """A run's id, name and status (None: no such run), without its config or results."""
    if not fits(run_id):
        return None
    with db.session_scope(read_only=True) as session:
        row = session.execute(select(Run.id, Run.name, Run.status)
                              .where(Run.id == run_id)).first()
    return None if row is None else RunLink(id=row[0], name=row[1], status=row[2])


def delete_run(db: Database, run_id: int) -> None:
    """Delete a run and (by ON DELETE CASCADE) all its metrics."""
    if not fits(run_id):
        raise NoSuchRun(run_id)
    with db.session_scope() as session:
        result = session.execute(delete(Run).where(Run.id == run_id)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NoSuchRun(run_id)
