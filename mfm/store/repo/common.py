"""What the repository's modules share: name checks, the upsert every backend understands,
and the per-run reads (latest metrics, tags) that complete a run's record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from mfm.store.convert import metric_value
from mfm.store.db import Database
from mfm.store.errors import NoSuchRun, StoreError
from mfm.store.models import LatestMetric, Run, RunTag
from mfm.text import check_name

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

__all__ = ["check_record_name", "upsert", "require_run", "upsert_latest", "latest_by_run",
           "tags_by_run"]


def check_record_name(name: str) -> None:
    """ValueError with :func:`mfm.text.check_name`'s reason when ``name`` cannot name a
    record."""
    reason = check_name("name", name)
    if reason is not None:
        raise ValueError(reason)


def upsert(db: Database, table: Table, keys: Sequence[str]) -> SqliteInsert | PostgresInsert:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE`` setting every other column."""
    stmt: SqliteInsert | PostgresInsert
    if db.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        stmt = sqlite_insert(table)
    elif db.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgres_insert
        stmt = postgres_insert(table)
    else:
        raise StoreError(f"the {db.dialect} backend is not supported (use SQLite or "
                         "PostgreSQL)")
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys})


def require_run(session: Session, run_id: int) -> None:
    """``NoSuchRun`` unless the run is there."""
    if session.execute(select(Run.id).where(Run.id == run_id)).first() is None:
        raise NoSuchRun(run_id)


def upsert_latest(db: Database, session: Session, run_id: int,
                  latest: Mapping[str, tuple[float | None, int | None, int | None]]) -> None:
    """Set a run's ``latest_metrics``: key -> (value, step, epoch)."""
    if latest:
        session.execute(upsert(db, LatestMetric.__table__, ("run_id", "key")),
                        [{"run_id": run_id, "key": k, "value": v, "step": s, "epoch": e}
                         for k, (v, s, e) in latest.items()])


def latest_by_run(session: Session, run_ids: Any) -> dict[int, dict[str, float]]:
    """Run id -> {key: latest value}, for the runs ``run_ids`` (ids or a subquery of ids)."""
    out: dict[int, dict[str, float]] = {}
    rows = session.execute(select(LatestMetric.run_id, LatestMetric.key, LatestMetric.value)
                           .where(LatestMetric.run_id.in_(run_ids))
                           .order_by(LatestMetric.run_id, LatestMetric.key))
    for run_id, key, value in rows:
        out.setdefault(run_id, {})[key] = metric_value(value)
    return out


def tags_by_run(session: Session, run_ids: Any) -> dict[int, list[str]]:
    """Run id -> its tags (sorted), for the runs ``run_ids`` (ids or a subquery of ids)."""
    out: dict[int, list[str]] = {}
    rows = session.execute(select(RunTag.run_id, RunTag.tag).where(RunTag.run_id.in_(run_ids))
                           .order_by(RunTag.run_id, RunTag.tag))
    for run_id, tag in rows:
        out.setdefault(run_id, []).append(tag)
    return out
