"""A run's metrics: step points, epoch scalars, per-class vectors (one per epoch), and the
``latest_metrics`` table the run list reads. A NaN value is written as NULL on every backend
and NULL comes back as NaN (:mod:`mfm.store.convert`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TypedDict

from sqlalchemy import select, update

from mfm.store.convert import (
    INT64_MAX,
    INT64_MIN,
    dumps,
    fits,
    metric_value,
    storable,
    stored_value,
)
from mfm.store.db import Database
from mfm.store.errors import NoSuchRun
from mfm.store.models import ClassMetric, EpochMetric, Run, StepMetric
from mfm.store.records import MetricPoint
from mfm.store.repo.common import latest_by_run, require_run, upsert, upsert_latest

__all__ = ["log_step_metrics", "log_epoch", "get_step_series", "get_epoch_series",
           "get_class_accuracy", "get_all_class_accuracy", "latest_metrics", "metric_keys"]


class _StepRow(TypedDict):
    run_id: int
    key: str
    step: int
    epoch: int
    value: float | None
    at: float


def log_step_metrics(db: Database, run_id: int,
                     points: Iterable[tuple[str, int, int, float]]) -> None:
    """Write (key, step, epoch, value) points in one transaction and refresh
    ``latest_metrics`` (the last point given per key wins). Re-logging a (key, step) replaces
    it, so a resumed run can log its steps again."""
    now = time.time()
    rows: list[_StepRow] = [{"run_id": run_id, "key": str(k), "step": int(s), "epoch": int(e),
                             "value": stored_value(float(v)), "at": now}
                            for k, s, e, v in points]
    if not rows:
        return
    if not fits(run_id):
        raise NoSuchRun(run_id)
    for r in rows:
        if not (fits(r["step"]) and fits(r["epoch"])):
            storable("step", r["step"])
            storable("epoch", r["epoch"])
    latest = {r["key"]: (r["value"], r["step"], r["epoch"]) for r in rows}
    with db.session_scope() as session:
        require_run(session, run_id)
        session.execute(upsert(db, StepMetric.__table__, ("run_id", "key", "step")), rows)
        upsert_latest(db, session, run_id, latest)


def log_epoch(db: Database, run_id: int, epoch: int, scalars: dict[str, float],
              class_acc: Sequence[float] | None) -> None:
    """An epoch's results in one transaction: its scalars (epoch_metrics and latest_metrics),
    its per-class accuracy vector, and ``runs.epoch``. Logging an epoch again replaces it."""
    epoch = storable("epoch", int(epoch))
    if not fits(run_id):
        raise NoSuchRun(run_id)
    now = time.time()
    values = {str(k): stored_value(float(v)) for k, v in scalars.items()}
    with db.session_scope() as session:
        result = session.execute(update(Run).where(Run.id == run_id).values(epoch=epoch)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NoSuchRun(run_id)
        if values:
            session.execute(upsert(db, EpochMetric.__table__, ("run_id", "key", "epoch")),
                            [{"run_id": run_id, "key": k, "epoch": epoch, "value": v,
                              "at": now} for k, v in values.items()])
            upsert_latest(db, session, run_id,
                          {k: (v, None, epoch) for k, v in values.items()})
        if class_acc is not None:
            session.execute(upsert(db, ClassMetric.__table__, ("run_id", "epoch", "kind")),
                            [{"run_id": run_id, "epoch": epoch, "kind": "acc",
                              "values_json": dumps([float(a) for a in class_acc])}])


def get_step_series(db: Database, run_id: int, key: str, *,
                    after_step: int | None = None) -> list[MetricPoint]:
    """A step metric's points ordered by step; with ``after_step``, only later ones."""
    if not fits(run_id) or (after_step is not None and after_step > INT64_MAX):
        return []
    if after_step is not None and after_step < INT64_MIN:
        after_step = None
    query = (select(StepMetric.step, StepMetric.epoch, StepMetric.value)
             .where(StepMetric.run_id == run_id, StepMetric.key == key)
             .order_by(StepMetric.step))
    if after_step is not None:
        query = query.where(StepMetric.step > after_step)
    with db.session_scope(read_only=True) as session:
        return [MetricPoint(step, epoch, metric_value(value))
                for step, epoch, value in session.execute(query)]


def get_epoch_series(db: Database, run_id: int, *,
                     after_epoch: int | None = None) -> dict[str, list[tuple[int, float]]]:
    """{key: [(epoch, value), ...]} ordered by epoch; with ``after_epoch``, only later ones."""
    if not fits(run_id) or (after_epoch is not None and after_epoch > INT64_MAX):
        return {}
    if after_epoch is not None and after_epoch < INT64_MIN:
        after_epoch = None
    query = (select(EpochMetric.key, EpochMetric.epoch, EpochMetric.value)
             .where(EpochMetric.run_id == run_id)
             .order_by(EpochMetric.key, EpochMetric.epoch))
    if after_epoch is not None:
        query = query.where(EpochMetric.epoch > after_epoch)
    out: dict[str, list[tuple[int, float]]] = {}
    with db.session_scope(read_only=True) as session:
        for key, epoch, value in session.execute(query):
            out.setdefault(key, []).append((epoch, metric_value(value)))
    return out


def get_class_accuracy(db: Database, run_id: int, epoch: int | None = None,
                       kind: str = "acc") -> list[float] | None:
    """The per-class vector of ``epoch`` (None: the latest epoch that has one)."""
    if not (fits(run_id) and fits(epoch)):
        return None
    query = select(ClassMetric.values_json).where(ClassMetric.run_id == run_id,
                                                  ClassMetric.kind == kind)
    if epoch is None:
        query = query.order_by(ClassMetric.epoch.desc()).limit(1)
    else:
        query = query.where(ClassMetric.epoch == epoch)
    with db.session_scope(read_only=True) as session:
        found = session.execute(query).scalar()
    return None if found is None else list(json.loads(found))


def get_all_class_accuracy(db: Database, run_id: int,
                           kind: str = "acc") -> dict[int, list[float]]:
    """{epoch: per-class vector}, in epoch order."""
    if not fits(run_id):
        return {}
    query = (select(ClassMetric.epoch, ClassMetric.values_json)
             .where(ClassMetric.run_id == run_id, ClassMetric.kind == kind)
             .order_by(ClassMetric.epoch))
    with db.session_scope(read_only=True) as session:
        return {epoch: list(json.loads(v)) for epoch, v in session.execute(query)}


def latest_metrics(db: Database, run_id: int) -> dict[str, float]:
    if not fits(run_id):
        return {}
    with db.session_scope(read_only=True) as session:
        return latest_by_run(session, [run_id]).get(run_id, {})


def metric_keys(db: Database, run_id: int) -> list[str]:
    """The distinct step-metric keys of a run, sorted."""
    if not fits(run_id):
        return []
    query = (select(StepMetric.key).where(StepMetric.run_id == run_id).distinct()
             .order_by(StepMetric.key))
    with db.session_scope(read_only=True) as session:
        return list(session.scalars(query))
