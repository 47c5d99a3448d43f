"""Sweeps in the records: the sweep (its file and grid), its cells, and the run answering each.

A cell is identified within its sweep by its resolved config's hash; a finished run with the
same hash answers it wherever that run came from (reused, not rerun). Functions return plain
frozen dataclasses, like :mod:`mfm.store.repo`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import defer

from mfm.store.convert import fits, run_record
from mfm.store.db import Database
from mfm.store.models import ClassMetric, Run, Sweep, SweepCell
from mfm.store.records import RunRecord
from mfm.text import check_name

__all__ = ["SweepRecord", "CellRecord", "PlannedCell", "save_sweep", "get_sweep", "list_sweeps",
           "set_cells", "link_cell", "sweep_cells", "runs_by_hash", "final_class_accuracy",
           "delete_sweep"]


@dataclass(frozen=True)
class SweepRecord:
    id: int
    name: str
    created_at: float
    updated_at: float
    file_text: str
    grid: dict[str, Any]
    code_version: str | None
    cells: int = 0
    statuses: dict[str, int] | None = None   # run status -> count ("not queued" for none)


@dataclass(frozen=True)
class PlannedCell:
    idx: int
    arm: str
    seed: int
    config_hash: str
    run_id: int | None


@dataclass(frozen=True)
class CellRecord:
    sweep_id: int
    idx: int
    arm: str
    seed: int
    config_hash: str
    run: RunRecord | None


def _sweep_record(row: Sweep, cells: int = 0, statuses: dict[str, int] | None = None
                  ) -> SweepRecord:
    return SweepRecord(id=row.id, name=row.name, created_at=row.created_at,
                       updated_at=row.updated_at, file_text=row.file_text,
                       grid=json.loads(row.grid_json), code_version=row.code_version,
                       cells=cells, statuses=statuses)


def save_sweep(db: Database, *, name: str, file_text: str, grid: dict[str, Any],
               code_version: str | None) -> SweepRecord:
    """Create the sweep ``name``, or update its file and grid (running a file again)."""
    if (why := check_name("name", name)) is not None:
        raise ValueError(why)
    now = time.time()
    with db.session_scope() as session:
        row = session.scalars(select(Sweep).where(Sweep.name == name)).first()
        if row is None:
            row = Sweep(name=name, created_at=now, updated_at=now, file_text=file_text,
                        grid_json=json.dumps(grid), code_version=code_version)
            session.add(row)
        else:
            row.updated_at, row.file_text = now, file_text
            row.grid_json, row.code_version = json.dumps(grid), code_version
        session.flush()
        return _sweep_record(row)


def _progress(session: Any, sweep_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    rows = session.execute(
        select(SweepCell.sweep_id, Run.status, func.count())
        .select_from(SweepCell).outerjoin(Run, Run.id == SweepCell.run_id)
        .where(SweepCell.sweep_id.in_(sweep_ids))
        .group_by(SweepCell.sweep_id, Run.status)).all()
    out: dict[int, dict[str, int]] = {}
    for sid, status, n in rows:
        out.setdefault(sid, {})[status or "not queued"] = n
    return out


def get_sweep(db: Database, ref: int | str) -> SweepRecord | None:
    """A sweep by id or by name, with its progress (a name of digits is found when no sweep
    has that id)."""
    with db.session_scope(read_only=True) as session:
        row = None
        if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
            if fits(int(ref)):
                row = session.get(Sweep, int(ref))
        if row is None and isinstance(ref, str):
            row = session.scalars(select(Sweep).where(Sweep.name == ref)).first()
        if row is None:
            return None
        statuses = _progress(session, [row.id]).get(row.id, {})
        return _sweep_record(row, sum(statuses.values()), statuses)


def list_sweeps(db: Database) -> list[SweepRecord]:
    """Every sweep, newest first, with its progress: two queries."""
    with db.session_scope(read_only=True) as session:
        rows = session.scalars(select(Sweep).order_by(Sweep.updated_at.desc(),
                                                      Sweep.id.desc())).all()
        progress = _progress(session, [r.id for r in rows]) if rows else {}
        return [_sweep_record(r, sum(progress.get(r.id, {}).values()), progress.get(r.id, {}))
                for r in rows]


def delete_sweep(db: Database, sweep_id: int) -> None:
    """The sweep and its cells; its runs stay (they are runs like any other)."""
    with db.session_scope() as session:
        session.execute(delete(Sweep).where(Sweep.id == sweep_id))


def set_cells(db: Database, sweep_id: int, cells: Iterable[PlannedCell]) -> None:
    """Make the sweep's cells exactly ``cells``; a cell already linked to a run keeps its run
    unless the plan names one."""
    with db.session_scope() as session:
        existing = {c.config_hash: c for c in session.scalars(
            select(SweepCell).where(SweepCell.sweep_id == sweep_id))}
        keep = set()
        for c in cells:
            keep.add(c.config_hash)
            row = existing.get(c.config_hash)
            if row is None:
                session.add(SweepCell(sweep_id=sweep_id, config_hash=c.config_hash, idx=c.idx,
                                      arm=c.arm, seed=c.seed, run_id=c.run_id))
            else:
                row.idx, row.arm, row.seed = c.idx, c.arm, c.seed
                if c.run_id is not None:
                    row.run_id = c.run_id
        for h, row in existing.items():
            if h not in keep:
                session.delete(row)


def link_cell(db: Database, sweep_id: int, config_hash: str, run_id: int, *,
              new_hash: str | None = None) -> None:
    """Link the cell ``config_hash`` to ``run_id``; ``new_hash``: the cell's identity changed
    meanwhile (a child cell recorded before its parent cell had a run), recorded with it."""
    with db.session_scope() as session:
        row = session.get(SweepCell, (sweep_id, config_hash))
        if row is None:
            raise ValueError(f"sweep {sweep_id} has no cell {config_hash[:12]}")
        row.run_id = run_id
        if new_hash is not None and new_hash != config_hash:
            row.config_hash = new_hash


def sweep_cells(db: Database, sweep_id: int) -> list[CellRecord]:
    """The sweep's cells in plan order, each with its run (confusion matrices left unread)."""
    with db.session_scope(read_only=True) as session:
        rows = session.execute(
            select(SweepCell, Run).outerjoin(Run, Run.id == SweepCell.run_id)
            .options(defer(Run.confusion_json))
            .where(SweepCell.sweep_id == sweep_id).order_by(SweepCell.idx)).all()
        return [CellRecord(sweep_id=c.sweep_id, idx=c.idx, arm=c.arm, seed=c.seed,
                           config_hash=c.config_hash,
                           run=None if r is None else run_record(r, confusion=False))
                for c, r in rows]


def runs_by_hash(db: Database, hashes: Iterable[str]) -> dict[str, list[RunRecord]]:
    """Every run whose config hash is one of ``hashes``, newest first per hash."""
    wanted = list(dict.fromkeys(hashes))
    out: dict[str, list[RunRecord]] = {}
    if not wanted:
        return out
    with db.session_scope(read_only=True) as session:
        for start in range(0, len(wanted), 500):  # stay under SQLite's parameter limit
            chunk = wanted[start:start + 500]
            rows = session.scalars(
                select(Run).options(defer(Run.confusion_json))
                .where(Run.config_hash.in_(chunk))
                .order_by(Run.created_at.desc(), Run.id.desc())).all()
            for r in rows:
                out.setdefault(r.config_hash or "", []).append(run_record(r, confusion=False))
    return out


def final_class_accuracy(db: Database, run_ids: Sequence[int]) -> dict[int, list[float]]:
    """Each run's per-class accuracy at its last recorded epoch: one query."""
    out: dict[int, list[float]] = {}
    if not run_ids:
        return out
    with db.session_scope(read_only=True) as session:
        last = (select(ClassMetric.run_id, func.max(ClassMetric.epoch).label("epoch"))
                .where(ClassMetric.run_id.in_(list(run_ids)), ClassMetric.kind == "acc")
                .group_by(ClassMetric.run_id).subquery())
        rows = session.execute(
            select(ClassMetric.run_id, ClassMetric.values_json)
            .join(last, (ClassMetric.run_id == last.c.run_id)
                  & (ClassMetric.epoch == last.c.epoch))
            .where(ClassMetric.kind == "acc")).all()
        for run_id, values in rows:
            out[run_id] = [float("nan") if v is None else float(v) for v in json.loads(values)]
    return out
