"""Recording a planned sweep and queueing what it is missing: the one path ``mfm sweep run``
and mfm-tui both take. Torch-free (queue-time checks only; the run process makes the full
ones).

All or nothing up to the resumes: every cell to run is checked (data, transfer source) before
anything is written; new runs are queued, then the sweep is saved with each cell linked to the
run that answers it; interrupted runs are queued to resume last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mfm.store import Database, queue
from mfm.store import sweeps as sweep_store
from mfm.sweeps.plan import CellPlan, SweepPlan
from mfm.sweeps.table import CellRun
from mfm.text import visible

__all__ = ["SweepQueueError", "QueuedSweep", "check_cells", "record_sweep", "queue_sweep",
           "cell_runs"]


class SweepQueueError(ValueError):
    """Nothing was recorded; one line naming the cell (or the field, e.g. ``slot: ...``)."""


@dataclass(frozen=True)
class QueuedSweep:
    sweep_id: int
    name: str
    new_run_ids: tuple[int, ...]
    resumed_run_ids: tuple[int, ...]


def check_cells(db: Database, cells: Sequence[CellPlan]) -> None:
    """Each cell's data (once per distinct data section) and transfer source, torch-free."""
    from mfm.runner.preflight import PreflightError, check_data, check_modulator

    seen: set[str] = set()
    for c in cells:
        try:
            key = repr(sorted(c.cell.resolved.get("data", {}).items()))
            if key not in seen:
                seen.add(key)
                check_data(c.cell.config)
            check_modulator(db, c.cell.config)
        except PreflightError as e:
            raise SweepQueueError(f"cell {c.cell.index + 1} ({visible(c.cell.arm, 120)}, seed "
                                  f"{c.cell.seed}): {e}") from None


def _name_cell(cells: Sequence[CellPlan], message: str) -> str:
    """submit_runs names the key, not the cell: say which cell has this data, when one does."""
    from mfm.runner.preflight import PreflightError, check_data

    for c in cells:
        try:
            check_data(c.cell.config)
        except PreflightError:
            return (f"cell {c.cell.index + 1} ({visible(c.cell.arm, 120)}, seed {c.cell.seed}): "
                    f"{message}")
    return message


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
    """Check every cell to run, queue the new ones, record the sweep, resume the interrupted
    ones. Starting a supervisor is the caller's step (``mfm.runner.control``).
    """
    from mfm.runner.submit import SubmitError, submit_runs

    todo = plan.to_run
    new = [c for c in todo if c.action == "new"]
    # submit_runs checks the new cells (all before queueing any); the resumed ones here
    check_cells(db, [c for c in todo if c.action != "new"])
    queued: dict[str, int] = {}
    if new:
        try:
            ids = submit_runs(db, db_target=db_target, runs_root=runs_root,
                              configs=[c.cell.config for c in new],
                              names=[f"{plan.spec.name} · {c.cell.arm} · seed {c.cell.seed}"[:200]
                                     for c in new], slot=slot)
        except SubmitError as e:
            raise SweepQueueError(_name_cell(new, str(e))) from None
        queued = {c.config_hash: run_id for c, run_id in zip(new, ids, strict=True)}
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
