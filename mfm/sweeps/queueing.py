"""Recording a planned sweep and queueing what it is missing: the one path ``mfm sweep run``
and mfm-tui both take. Torch-free (queue-time checks only; the run process makes the full
ones).

All or nothing up to the resumes: every cell to run is checked (data, transfer source, parent
run) before anything is written; new runs are queued, parents before children (a child of a
cell queued in the same call gets its parent's new run id as ``train.init_from``, and waits in
the queue until that run completes), then the sweep is saved with each cell linked to the run
that answers it; interrupted runs are queued to resume last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfm.lineage import arm_name
from mfm.store import Database, queue
from mfm.store import sweeps as sweep_store
from mfm.store.hashing import config_hash
from mfm.store.records import LIVE, RESUMABLE
from mfm.sweeps.lineage import where, with_parent_run
from mfm.sweeps.plan import CellPlan, SweepPlan
from mfm.sweeps.table import CellRun

__all__ = ["SweepQueueError", "QueuedSweep", "check_cells", "record_sweep", "queue_sweep",
           "cell_runs", "resolved_child", "PARENT_WAITS"]

#: what a sweep cell's parent run may be when the cell is queued: live (the child waits for
#: it), or ended without completing (the child waits until ``mfm sweep resume`` retries it)
PARENT_WAITS = (*LIVE, *RESUMABLE)


class SweepQueueError(ValueError):
    """Nothing was recorded; one line naming the cell (or the field, e.g. ``slot: ...``)."""


@dataclass(frozen=True)
class QueuedSweep:
    sweep_id: int
    name: str
    new_run_ids: tuple[int, ...]
    resumed_run_ids: tuple[int, ...]


def check_cells(db: Database, cells: Sequence[CellPlan]) -> None:
    """Each cell's data (once per distinct data section), transfer source and parent run (a
    cell whose parent cell has no run yet is checked against it when both are queued),
    torch-free."""
    from mfm.runner.preflight import PreflightError, check_data, check_modulator, check_parent

    previews: dict[str, dict[str, Any]] = {}
    for c in cells:
        try:
            key = repr(sorted(c.cell.resolved.get("data", {}).items()))
            if key not in previews:
                previews[key] = check_data(c.cell.config)
            check_modulator(db, c.cell.config)
            if arm_name(c.cell.config.train.init_from) is None:
                check_parent(db, c.cell.config, counts=previews[key], waits=PARENT_WAITS)
        except PreflightError as e:
            raise SweepQueueError(f"{where(c.cell)}: {e}") from None


def record_sweep(db: Database, plan: SweepPlan, *, code_version: str | None,
                 runs: dict[str, int] | None = None) -> sweep_store.SweepRecord:
    """Save the sweep (created, or updated when its name exists) with every cell linked to the
    run that answers it: ``runs`` (config hash -> run id) first, else the plan's run."""
    runs = runs or {}
    try:
        rec = sweep_store.save_sweep(db, name=plan.spec.name, file_text=plan.spec.text,
                                     grid=plan.grid(), code_version=code_version)
    except ValueError as e:
        raise SweepQueueError(str(e)) from None
    sweep_store.set_cells(db, rec.id, [
        sweep_store.PlannedCell(idx=c.cell.index, arm=c.cell.arm, seed=c.cell.seed,
                                config_hash=c.config_hash,
                                run_id=runs.get(c.config_hash,
                                                None if c.run is None else c.run.id))
        for c in plan.cells])
    return rec


def queue_sweep(db: Database, plan: SweepPlan, *, db_target: str, runs_root: Path,
                code_version: str | None, slot: str = "") -> QueuedSweep:
    """Check every cell to run, queue the new ones (parents before children), record the
    sweep, resume the interrupted ones. Starting a supervisor is the caller's step
    (``mfm.runner.control``).
    """
    from mfm.runner.submit import SubmitError, submit_runs

    todo = plan.to_run  # parents before children
    new = [c for c in todo if c.action == "new"]
    # submit_runs checks the new cells (all before queueing any); the resumed ones here
    check_cells(db, [c for c in todo if c.action != "new"])
    queued: dict[str, int] = {}
    if new:
        at = {c.cell.index: k for k, c in enumerate(new)}
        # a child of a cell with no run yet (train.init_from still arm:NAME) is queued after
        # it, with its new run id
        after = [at[c.parent] if c.parent is not None and c.parent in at
                 and arm_name(c.cell.config.train.init_from) is not None else None
                 for c in new]
        try:
            ids = submit_runs(db, db_target=db_target, runs_root=runs_root,
                              configs=[c.cell.config for c in new],
                              names=[f"{plan.spec.name} · {c.cell.arm} · seed {c.cell.seed}"[:200]
                                     for c in new], slot=slot, after=after,
                              parent_waits=PARENT_WAITS)
        except SubmitError as e:
            bad = new[e.index] if e.index is not None else None
            raise SweepQueueError(f"{where(bad.cell)}: {e}" if bad else str(e)) from None
        final = {c.cell.index: resolved_child(c, ids[j])
                 for c, j in zip(new, after, strict=True) if j is not None}
        plan = dataclasses.replace(plan, cells=[final.get(c.cell.index, c) for c in plan.cells])
        queued = {final.get(c.cell.index, c).config_hash: run_id
                  for c, run_id in zip(new, ids, strict=True)}
    rec = record_sweep(db, plan, code_version=code_version, runs=queued)
    resumed = []
    for c in todo:
        if c.action == "resume" and c.run is not None:
            try:
                queue.request_resume(db, c.run.id)
                resumed.append(c.run.id)
            except queue.QueueError:  # resumed or finished by someone since the plan
                pass
    return QueuedSweep(rec.id, rec.name, tuple(queued.values()), tuple(resumed))


def resolved_child(c: CellPlan, parent_run: int) -> CellPlan:
    """A child cell planned before its parent cell had a run, now that it has one: its config
    names that run, and its identity (config hash) follows."""
    cell = with_parent_run(c.cell, parent_run)
    return dataclasses.replace(c, cell=cell, config_hash=config_hash(cell.resolved))


def cell_runs(db: Database, sweep_id: int, *, with_classes: bool = False,
              known_classes: frozenset[int] = frozenset()) -> list[CellRun]:
    """A sweep's cells with what the records hold for each (the table's input, for ``mfm
    sweep show`` and mfm-tui alike); with ``with_classes`` each completed run's final
    per-class accuracy too (one more query), except for the runs in ``known_classes`` (a
    caller that already holds theirs)."""
    cells = sweep_store.sweep_cells(db, sweep_id)
    class_acc: dict[int, list[float]] = {}
    want = [c.run.id for c in cells if c.run is not None and c.run.status == "completed"
            and c.run.id not in known_classes]
    if with_classes and want:
        class_acc = sweep_store.final_class_accuracy(db, want)
    out = []
    for c in cells:
        r = c.run
        counts = (r.class_counts or {}) if r is not None else {}
        out.append(CellRun(arm=c.arm, seed=c.seed, run_id=None if r is None else r.id,
                           status=None if r is None else r.status,
                           summary=None if r is None else r.summary,
                           class_acc=None if r is None else class_acc.get(r.id),
                           train_counts=counts.get("train"), class_names=counts.get("classes")))
    return out
