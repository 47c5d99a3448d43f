"""Repository functions: every read and write of the records goes through here.

Each function takes the ``Database`` first, runs in one ``session_scope`` (one transaction)
and returns plain frozen dataclasses, dicts or lists; no session or ORM row leaves. A NaN metric
value is written as NULL on every backend (SQLite would turn it into NULL anyway; PostgreSQL
would keep NaN, which sorts above every number there), so the records hold the same values
on both, and NULL comes back as NaN.

An id beyond SQLite's 64-bit integers names no record: reads find nothing, writes say
"no run N" as for any other missing id (the driver would raise OverflowError). Names are
checked with :func:`mfm.text.check_name` before anything is written.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session, defer

from mfm.store.db import Database, StoreError
from mfm.store.hashing import config_hash
from mfm.store.models import (
    ClassMetric,
    Config,
    DatasetSpec,
    EpochMetric,
    LatestMetric,
    Run,
    RunTag,
    StepMetric,
)
from mfm.store.records import (
    STATUSES,
    TERMINAL_STATUSES,
    ConfigRecord,
    DatasetSpecRecord,
    MetricPoint,
    RunRecord,
    check_status,
)
from mfm.text import check_name, visible

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

__all__ = [
    "STATUSES", "TERMINAL_STATUSES", "UPDATABLE_RUN_FIELDS",
    "create_run", "update_run", "get_run", "list_runs",
    "delete_run", "log_step_metrics", "log_epoch", "get_step_series", "get_epoch_series",
    "get_class_accuracy", "get_all_class_accuracy", "latest_metrics", "metric_keys",
    "save_dataset_spec", "get_dataset_spec", "list_dataset_specs", "delete_dataset_spec",
    "save_config", "get_config", "list_configs",
]

_PLAIN_FIELDS = frozenset({
    "status", "started_at", "finished_at", "host", "pid", "device", "split_hash", "error",
    "checkpoint_dir", "log_path", "epoch", "heartbeat_at", "name",
    "queued_at", "slot", "proc_start", "cancel_requested_at", "resume_requested", "attempt",
    "code_version", "want_slot", "job_id", "job_state",
})
_JSON_FIELDS = {"summary": "summary_json", "class_counts": "class_counts_json",
                "confusion": "confusion_json"}
UPDATABLE_RUN_FIELDS = tuple(sorted(_PLAIN_FIELDS | _JSON_FIELDS.keys()))


# -- helpers --------------------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _fits(n: Any) -> bool:
    """Can SQLite hold this integer? (Non-ints are left to the driver to judge.)"""
    return not isinstance(n, int) or INT64_MIN <= n <= INT64_MAX


def _storable(what: str, n: Any) -> Any:
    if not _fits(n):
        raise ValueError(f"{what} {n} is out of range (at most {INT64_MAX})")
    return n


def _check_name(name: str) -> None:
    reason = check_name("name", name)
    if reason is not None:
        raise ValueError(reason)


def _dumps(value: Any) -> str:
    return json.dumps(value)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _value(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _stored(v: float) -> float | None:
    """What a metric value is written as: NaN as NULL (the same on every backend)."""
    return None if math.isnan(v) else v


def _upsert(db: Database, table: Table, keys: Sequence[str]) -> SqliteInsert | PostgresInsert:
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


def _require_run(session: Session, run_id: int) -> None:
    if session.execute(select(Run.id).where(Run.id == run_id)).first() is None:
        raise StoreError(f"no run {run_id}")


def _upsert_latest(db: Database, session: Session, run_id: int,
                   latest: Mapping[str, tuple[float | None, int | None, int | None]]) -> None:
    if latest:
        session.execute(_upsert(db, LatestMetric.__table__, ("run_id", "key")),
                        [{"run_id": run_id, "key": k, "value": v, "step": s, "epoch": e}
                         for k, (v, s, e) in latest.items()])


def _latest_by_run(session: Session, run_ids: Any) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    rows = session.execute(select(LatestMetric.run_id, LatestMetric.key, LatestMetric.value)
                           .where(LatestMetric.run_id.in_(run_ids))
                           .order_by(LatestMetric.run_id, LatestMetric.key))
    for run_id, key, value in rows:
        out.setdefault(run_id, {})[key] = _value(value)
    return out


def _run_record(run: Run, latest: dict[str, float] | None = None, *,
                confusion: bool = True, tags: Sequence[str] = ()) -> RunRecord:
    return RunRecord(
        id=run.id, name=run.name, status=run.status, created_at=run.created_at,
        started_at=run.started_at, finished_at=run.finished_at, host=run.host, pid=run.pid,
        device=run.device, config=json.loads(run.config_json), split_hash=run.split_hash,
        error=run.error, summary=_loads(run.summary_json),
        class_counts=_loads(run.class_counts_json),
        confusion=_loads(run.confusion_json) if confusion else None,
        epochs_total=run.epochs_total, epoch=run.epoch, checkpoint_dir=run.checkpoint_dir,
        log_path=run.log_path, heartbeat_at=run.heartbeat_at,
        dataset_spec_id=run.dataset_spec_id, config_id=run.config_id,
        queued_at=run.queued_at, slot=run.slot, proc_start=run.proc_start,
        cancel_requested_at=run.cancel_requested_at,
        resume_requested=bool(run.resume_requested), attempt=run.attempt or 0,
        code_version=run.code_version, want_slot=run.want_slot, latest=dict(latest or {}),
        note=run.note, tags=tuple(tags), want_host=run.want_host,
        job_id=run.job_id, job_state=run.job_state)


def _tags_by_run(session: Session, run_ids: Any) -> dict[int, list[str]]:
    """Run id -> its tags (sorted), for the runs ``run_ids`` (ids or a subquery of ids)."""
    out: dict[int, list[str]] = {}
    rows = session.execute(select(RunTag.run_id, RunTag.tag).where(RunTag.run_id.in_(run_ids))
                           .order_by(RunTag.run_id, RunTag.tag))
    for run_id, tag in rows:
        out.setdefault(run_id, []).append(tag)
    return out


# -- runs -----------------------------------------------------------------------------------

def create_run(db: Database, *, config: dict[str, Any], epochs_total: int,
               name: str | None = None, status: str = "created",
               dataset_spec_id: int | None = None, config_id: int | None = None) -> int:
    """Record a new run with its resolved config (frozen from now on); returns its id."""
    check_status(status)
    if name is not None:
        _check_name(name)
    if not _fits(dataset_spec_id):
        raise StoreError(f"no dataset spec {dataset_spec_id}")
    if not _fits(config_id):
        raise StoreError(f"no config {config_id}")
    _storable("epochs_total", int(epochs_total))
    run = Run(name=name, status=status, created_at=time.time(), config_json=_dumps(config),
              config_hash=config_hash(config),
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
        _check_name(fields["name"])
    if not _fits(run_id):
        raise StoreError(f"no run {run_id}")
    values = {_JSON_FIELDS.get(k, k): (_dumps(v) if k in _JSON_FIELDS and v is not None else v)
              for k, v in fields.items()}
    if isinstance(values.get("resume_requested"), bool):  # a 0/1 column (PostgreSQL: bigint)
        values["resume_requested"] = int(values["resume_requested"])
    with db.session_scope() as session:
        if not values:
            _require_run(session, run_id)
            return
        result = session.execute(update(Run).where(Run.id == run_id).values(**values)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise StoreError(f"no run {run_id}")


def get_run(db: Database, run_id: int) -> RunRecord | None:
    if not _fits(run_id):
        return None
    with db.session_scope(read_only=True) as session:
        run = session.get(Run, run_id)
        if run is None:
            return None
        return _run_record(run, _latest_by_run(session, [run_id]).get(run_id),
                           tags=_tags_by_run(session, [run_id]).get(run_id, ()))


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
    if limit is not None and not _fits(limit):
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
        latest = _latest_by_run(session, ids)
        tags = _tags_by_run(session, ids)
        return [_run_record(r, latest.get(r.id), confusion=confusion, tags=tags.get(r.id, ()))
                for r in runs]


# -- tags and notes ---------------------------------------------------------------------------

TAG_MAX = 64


def check_tag(tag: str) -> str | None:
    """Why ``tag`` cannot be a tag (None if it can): 1..64 characters, no spaces or commas,
    no control characters."""
    if not tag or len(tag) > TAG_MAX:
        return f"tag: 1 to {TAG_MAX} characters (got {len(tag)})"
    if any(ch.isspace() or ch == "," for ch in tag):
        return f"tag: no spaces or commas (got {visible(repr(tag), 80)})"
    if (why := check_name("tag", tag)) is not None:
        return why
    return None


def set_tags(db: Database, run_id: int, *, add: Iterable[str] = (),
             remove: Iterable[str] = ()) -> tuple[str, ...]:
    """Add and remove tags of a run; returns its tags afterwards. ValueError for a bad tag,
    StoreError for an unknown run; nothing is written then."""
    add, remove = list(dict.fromkeys(add)), set(remove)
    for t in add:
        if (why := check_tag(t)) is not None:
            raise ValueError(why)
    if not _fits(run_id):
        raise StoreError(f"no run {run_id}")
    with db.session_scope() as session:
        _require_run(session, run_id)
        have = set(session.scalars(select(RunTag.tag).where(RunTag.run_id == run_id)))
        for t in add:
            if t not in have:
                session.add(RunTag(run_id=run_id, tag=t))
                have.add(t)
        if remove & have:
            session.execute(delete(RunTag).where(RunTag.run_id == run_id,
                                                 RunTag.tag.in_(remove & have)))
            have -= remove
        return tuple(sorted(have))


def set_note(db: Database, run_id: int, note: str | None) -> None:
    """A run's free-text note (None or "" clears it); at most 10,000 characters."""
    if note is not None and len(note) > 10_000:
        raise ValueError(f"note: at most 10000 characters (got {len(note)})")
    if not _fits(run_id):
        raise StoreError(f"no run {run_id}")
    with db.session_scope() as session:
        _require_run(session, run_id)
        session.execute(update(Run).where(Run.id == run_id).values(note=note or None))


def all_tags(db: Database) -> dict[str, int]:
    """Every tag in the records and how many runs carry it."""
    with db.session_scope(read_only=True) as session:
        rows = session.execute(select(RunTag.tag, func.count()).group_by(RunTag.tag)
                               .order_by(RunTag.tag))
        return {t: n for t, n in rows}


def delete_run(db: Database, run_id: int) -> None:
    """Delete a run and (by ON DELETE CASCADE) all its metrics."""
    if not _fits(run_id):
        raise StoreError(f"no run {run_id}")
    with db.session_scope() as session:
        result = session.execute(delete(Run).where(Run.id == run_id)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise StoreError(f"no run {run_id}")


# -- metrics --------------------------------------------------------------------------------

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
                             "value": _stored(float(v)), "at": now} for k, s, e, v in points]
    if not rows:
        return
    if not _fits(run_id):
        raise StoreError(f"no run {run_id}")
    for r in rows:
        if not (_fits(r["step"]) and _fits(r["epoch"])):
            _storable("step", r["step"])
            _storable("epoch", r["epoch"])
    latest = {r["key"]: (r["value"], r["step"], r["epoch"]) for r in rows}
    with db.session_scope() as session:
        _require_run(session, run_id)
        session.execute(_upsert(db, StepMetric.__table__, ("run_id", "key", "step")), rows)
        _upsert_latest(db, session, run_id, latest)


def log_epoch(db: Database, run_id: int, epoch: int, scalars: dict[str, float],
              class_acc: Sequence[float] | None) -> None:
    """An epoch's results in one transaction: its scalars (epoch_metrics and latest_metrics),
    its per-class accuracy vector, and ``runs.epoch``. Logging an epoch again replaces it."""
    epoch = _storable("epoch", int(epoch))
    if not _fits(run_id):
        raise StoreError(f"no run {run_id}")
    now = time.time()
    values = {str(k): _stored(float(v)) for k, v in scalars.items()}
    with db.session_scope() as session:
        result = session.execute(update(Run).where(Run.id == run_id).values(epoch=epoch)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise StoreError(f"no run {run_id}")
        if values:
            session.execute(_upsert(db, EpochMetric.__table__, ("run_id", "key", "epoch")),
                            [{"run_id": run_id, "key": k, "epoch": epoch, "value": v,
                              "at": now} for k, v in values.items()])
            _upsert_latest(db, session, run_id,
                           {k: (v, None, epoch) for k, v in values.items()})
        if class_acc is not None:
            session.execute(_upsert(db, ClassMetric.__table__, ("run_id", "epoch", "kind")),
                            [{"run_id": run_id, "epoch": epoch, "kind": "acc",
                              "values_json": _dumps([float(a) for a in class_acc])}])


def get_step_series(db: Database, run_id: int, key: str, *,
                    after_step: int | None = None) -> list[MetricPoint]:
    """A step metric's points ordered by step; with ``after_step``, only later ones."""
    if not _fits(run_id) or (after_step is not None and after_step > INT64_MAX):
        return []
    if after_step is not None and after_step < INT64_MIN:
        after_step = None
    query = (select(StepMetric.step, StepMetric.epoch, StepMetric.value)
             .where(StepMetric.run_id == run_id, StepMetric.key == key)
             .order_by(StepMetric.step))
    if after_step is not None:
        query = query.where(StepMetric.step > after_step)
    with db.session_scope(read_only=True) as session:
        return [MetricPoint(step, epoch, _value(value))
                for step, epoch, value in session.execute(query)]


def get_epoch_series(db: Database, run_id: int, *,
                     after_epoch: int | None = None) -> dict[str, list[tuple[int, float]]]:
    """{key: [(epoch, value), ...]} ordered by epoch; with ``after_epoch``, only later ones."""
    if not _fits(run_id) or (after_epoch is not None and after_epoch > INT64_MAX):
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
            out.setdefault(key, []).append((epoch, _value(value)))
    return out


def get_class_accuracy(db: Database, run_id: int, epoch: int | None = None,
                       kind: str = "acc") -> list[float] | None:
    """The per-class vector of ``epoch`` (None: the latest epoch that has one)."""
    if not (_fits(run_id) and _fits(epoch)):
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
    if not _fits(run_id):
        return {}
    query = (select(ClassMetric.epoch, ClassMetric.values_json)
             .where(ClassMetric.run_id == run_id, ClassMetric.kind == kind)
             .order_by(ClassMetric.epoch))
    with db.session_scope(read_only=True) as session:
        return {epoch: list(json.loads(v)) for epoch, v in session.execute(query)}


def latest_metrics(db: Database, run_id: int) -> dict[str, float]:
    if not _fits(run_id):
        return {}
    with db.session_scope(read_only=True) as session:
        return _latest_by_run(session, [run_id]).get(run_id, {})


def metric_keys(db: Database, run_id: int) -> list[str]:
    """The distinct step-metric keys of a run, sorted."""
    if not _fits(run_id):
        return []
    query = (select(StepMetric.key).where(StepMetric.run_id == run_id).distinct()
             .order_by(StepMetric.key))
    with db.session_scope(read_only=True) as session:
        return list(session.scalars(query))


# -- dataset specs --------------------------------------------------------------------------

def _spec_record(row: DatasetSpec) -> DatasetSpecRecord:
    return DatasetSpecRecord(id=row.id, name=row.name, spec=json.loads(row.spec_json),
                             created_at=row.created_at)


def save_dataset_spec(db: Database, name: str, spec: dict[str, Any]) -> int:
    """Save a named dataset spec, replacing the spec of an existing name (its id is kept)."""
    if not name:
        raise ValueError("a dataset spec needs a name")
    _check_name(name)
    with db.session_scope() as session:
        row = session.scalars(select(DatasetSpec).where(DatasetSpec.name == name)).first()
        if row is None:
            row = DatasetSpec(name=name, spec_json=_dumps(spec), created_at=time.time())
            session.add(row)
        else:
            row.spec_json = _dumps(spec)
        session.flush()
        return row.id


def get_dataset_spec(db: Database, name: str) -> DatasetSpecRecord | None:
    with db.session_scope(read_only=True) as session:
        row = session.scalars(select(DatasetSpec).where(DatasetSpec.name == name)).first()
        return None if row is None else _spec_record(row)


def list_dataset_specs(db: Database) -> list[DatasetSpecRecord]:
    """All dataset specs, by name."""
    with db.session_scope(read_only=True) as session:
        return [_spec_record(r)
                for r in session.scalars(select(DatasetSpec).order_by(DatasetSpec.name))]


def delete_dataset_spec(db: Database, name: str) -> None:
    """Delete a dataset spec; runs that used it keep their frozen config
    (their ``dataset_spec_id`` becomes NULL)."""
    with db.session_scope() as session:
        result = session.execute(delete(DatasetSpec).where(DatasetSpec.name == name)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise StoreError(f"no dataset spec named {name!r}")


# -- named configs --------------------------------------------------------------------------

def _config_record(row: Config) -> ConfigRecord:
    return ConfigRecord(id=row.id, name=row.name, version=row.version,
                        config=json.loads(row.config_json), created_at=row.created_at)


def save_config(db: Database, name: str, config: dict[str, Any]) -> ConfigRecord:
    """Save a named config. Content equal to the name's latest version returns that version;
    anything else becomes version latest + 1 (version 1 for a new name)."""
    if not name:
        raise ValueError("a config needs a name")
    _check_name(name)
    text = _dumps(config)
    content = json.loads(text)
    with db.session_scope() as session:
        latest = session.scalars(select(Config).where(Config.name == name)
                                 .order_by(Config.version.desc()).limit(1)).first()
        if latest is not None and json.loads(latest.config_json) == content:
            return _config_record(latest)
        row = Config(name=name, version=1 if latest is None else latest.version + 1,
                     config_json=text, created_at=time.time())
        session.add(row)
        session.flush()
        return _config_record(row)


def get_config(db: Database, name: str, version: int | None = None) -> ConfigRecord | None:
    """A named config at ``version`` (None: the latest)."""
    if not _fits(version):
        return None
    query = select(Config).where(Config.name == name)
    if version is None:
        query = query.order_by(Config.version.desc()).limit(1)
    else:
        query = query.where(Config.version == version)
    with db.session_scope(read_only=True) as session:
        row = session.scalars(query).first()
        return None if row is None else _config_record(row)


def list_configs(db: Database) -> list[ConfigRecord]:
    """The latest version of each named config, by name."""
    newest = (select(Config.name, func.max(Config.version).label("version"))
              .group_by(Config.name).subquery())
    query = (select(Config)
             .join(newest, (Config.name == newest.c.name) & (Config.version == newest.c.version))
             .order_by(Config.name))
    with db.session_scope(read_only=True) as session:
        return [_config_record(r) for r in session.scalars(query)]
