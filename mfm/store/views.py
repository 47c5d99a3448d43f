"""What a front end shows, read (and the few edits it makes) in one call each.

The queries a screen needs beyond the repository's record-by-record functions: the runs that
changed since the last look, which runs use a named config, deleting a named config that no
run uses. Each takes the ``Database`` first and returns plain frozen values, like
``mfm.store.repo``; no session or ORM row leaves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mfm.store import queue, repo
from mfm.store.db import Database
from mfm.store.errors import StoreError
from mfm.store.models import Config, Run, Sweep, SweepCell
from mfm.store.records import LIVE, RunRecord

__all__ = ["RunsDelta", "ConfigUse", "Fingerprint", "runs_delta", "config_use",
           "delete_config", "BULK_READ", "sweep_fingerprint", "run_sweeps", "run_labels"]

Fingerprint = tuple[Any, ...]
"""What a run looked like at the last poll: equal fingerprints, nothing to re-read."""

BULK_READ = 50
"""Above this many changed runs, one full listing is cheaper than reading them one by one."""


@dataclass(frozen=True)
class RunsDelta:
    """What changed in the runs table since the fingerprints the caller already has."""

    changed: tuple[RunRecord, ...]         # new or changed runs, read in full
    removed: tuple[int, ...]               # ids gone from the records
    positions: dict[int, int]              # queued run id -> position (1 = next)
    fingerprints: dict[int, Fingerprint]   # id -> fingerprint, to pass to the next poll


@dataclass(frozen=True)
class ConfigUse:
    """A named config's latest version and the runs that used any of its versions."""

    name: str
    version: int
    run_ids: tuple[int, ...]


def _fingerprint_columns() -> list[Any]:
    return [Run.id, Run.status, Run.epoch, Run.heartbeat_at, Run.started_at, Run.finished_at,
            Run.slot, Run.device, Run.name, Run.attempt, Run.cancel_requested_at,
            Run.queued_at, Run.class_counts_json.is_(None), Run.summary_json.is_(None),
            Run.error]  # a queued run's note on what it waits for (a parent, a host)


def runs_delta(db: Database, known: dict[int, Fingerprint] | None = None) -> RunsDelta:
    """The runs that are new or changed since ``known`` (id -> fingerprint from the last
    call; None or {} = all of them), the ones that are gone, and queue positions.

    Cheap whatever the number of runs: ids and statuses come from the status index alone,
    and only runs that are not finished have their live columns read (a finished run
    changes only by changing status: resume, lost). Changed runs are then read in full.
    """
    known = known or {}
    with db.session_scope(read_only=True) as session:
        statuses: dict[int, str] = {rid: st for rid, st in
                                     session.execute(select(Run.id, Run.status))}
        live = [st for st in LIVE if st in statuses.values()]
        rows = session.execute(select(*_fingerprint_columns())
                               .where(Run.status.in_(live))).all() if live else []
    prints: dict[int, Fingerprint] = {rid: (st,) for rid, st in statuses.items()}
    prints.update({row[0]: tuple(row[1:]) for row in rows})
    removed = set(known) - set(prints)
    dirty = [rid for rid, fp in prints.items() if known.get(rid) != fp]
    changed: list[RunRecord]
    if not known or len(dirty) > BULK_READ:
        wanted = set(dirty)
        changed = [r for r in repo.list_runs(db, confusion=False) if r.id in wanted]
    else:
        changed = [r for r in (repo.get_run(db, rid) for rid in sorted(dirty))
                   if r is not None]
    read = {r.id for r in changed}
    gone = {rid for rid in dirty if rid not in read}  # deleted in between
    fingerprints = {rid: fp for rid, fp in prints.items() if rid not in gone}
    positions = queue.queue_positions(db) if "queued" in live else {}
    return RunsDelta(tuple(changed), tuple(sorted(removed | (gone & set(known)))),
                     positions, fingerprints)


def _config_use(session: Session, name: str) -> ConfigUse | None:
    latest = session.execute(select(func.max(Config.version))
                             .where(Config.name == name)).scalar_one_or_none()
    if latest is None:
        return None
    ids = session.execute(select(Run.id).join(Config, Run.config_id == Config.id)
                          .where(Config.name == name).order_by(Run.id)).scalars().all()
    return ConfigUse(name, latest, tuple(ids))


def config_use(db: Database, name: str) -> ConfigUse | None:
    """The latest version of a named config and the runs that use any of its versions
    (None: no config of that name)."""
    with db.session_scope(read_only=True) as session:
        return _config_use(session, name)


def delete_config(db: Database, name: str) -> ConfigUse:
    """Delete every version of a named config and return what was deleted. Refused
    (StoreError) when there is no such config, or while runs use one of its versions: they
    keep pointing at what they ran with. The check and the delete are one transaction."""
    with db.session_scope() as session:
        use = _config_use(session, name)
        if use is None:
            raise StoreError(f"no config named {name!r}")
        if use.run_ids:
            raise StoreError(f"config {name!r} is used by run(s) "
                             f"{', '.join(map(str, use.run_ids))}; it is kept so they keep "
                             "their record")
        session.execute(delete(Config).where(Config.name == name)
                        .execution_options(synchronize_session=False))
    return use


def sweep_fingerprint(db: Database, sweep_id: int) -> Fingerprint | None:
    """What a sweep's table depends on, in one small query: when it was last recorded and,
    per cell, its arm, its run and that run's status and whether it has a summary. Equal
    fingerprints: the arm table has not changed, nothing to re-read. None: no such sweep."""
    with db.session_scope(read_only=True) as session:
        updated = session.execute(select(Sweep.updated_at)
                                  .where(Sweep.id == sweep_id)).scalar_one_or_none()
        if updated is None:
            return None
        rows = session.execute(
            select(SweepCell.idx, SweepCell.arm, SweepCell.run_id, Run.status,
                   Run.summary_json.is_(None))
            .select_from(SweepCell).outerjoin(Run, Run.id == SweepCell.run_id)
            .where(SweepCell.sweep_id == sweep_id).order_by(SweepCell.idx)).all()
    return (updated, *(tuple(r) for r in rows))


def run_sweeps(db: Database) -> dict[int, tuple[str, ...]]:
    """Run id -> the names of the sweeps it answers a cell of (runs in no sweep left out):
    one query, for the runs screen's ``sweep:`` filter."""
    with db.session_scope(read_only=True) as session:
        rows = session.execute(select(SweepCell.run_id, Sweep.name)
                               .join(Sweep, Sweep.id == SweepCell.sweep_id)
                               .where(SweepCell.run_id.is_not(None))
                               .order_by(SweepCell.run_id, Sweep.id)).all()
    out: dict[int, list[str]] = {}
    for rid, name in rows:
        names = out.setdefault(int(rid or 0), [])
        if name not in names:
            names.append(name)
    return {rid: tuple(names) for rid, names in out.items()}


def run_labels(db: Database) -> dict[int, tuple[tuple[str, ...], str | None]]:
    """Run id -> (its tags, its note), for the runs that have either: two small queries, so a
    front end sees tags and notes set elsewhere (``mfm tag``) without re-reading runs."""
    from mfm.store.models import RunTag

    with db.session_scope(read_only=True) as session:
        tags: dict[int, list[str]] = {}
        for rid, tag in session.execute(select(RunTag.run_id, RunTag.tag)
                                        .order_by(RunTag.run_id, RunTag.tag)):
            tags.setdefault(int(rid), []).append(tag)
        notes = {int(rid): note for rid, note in session.execute(
            select(Run.id, Run.note).where(Run.note.is_not(None), Run.note != ""))}
    return {rid: (tuple(tags.get(rid, ())), notes.get(rid))
            for rid in sorted(set(tags) | set(notes))}
