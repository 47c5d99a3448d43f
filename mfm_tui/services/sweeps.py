"""Sweeps: every sweep with its progress, one sweep's cells, reading, planning and queueing a
sweep file."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mfm_tui.services.backend import Backend, ServiceError
from mfm_tui.services.results import QueuedSweep, SweepDetail, SweepsPoll

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm.store.sweeps import SweepRecord
    from mfm.store.views import Fingerprint
    from mfm.sweeps.plan import SweepPlan
    from mfm.sweeps.spec import SweepSpec
    from mfm.sweeps.table import CellRun


class SweepServices(Backend):
    # -- sweeps -------------------------------------------------------------------------------

    def list_sweeps(self) -> list[SweepRecord]:
        from mfm.store import sweeps as sweep_store

        return self._call(sweep_store.list_sweeps)

    def poll_sweeps(self, sweep_id: int | None, known: Fingerprint | None = None,
                    have_classes: frozenset[int] = frozenset()) -> SweepsPoll:
        """Every sweep with its progress (two queries) and, for ``sweep_id``, its cells
        when they changed since the fingerprint ``known`` (one small query when they did
        not). Per-class vectors are read only for completed runs not in ``have_classes``."""
        from mfm.store import views

        sweeps = self.list_sweeps()
        if sweep_id is None:
            return SweepsPoll(sweeps, None)
        fp = self._call(views.sweep_fingerprint, sweep_id)
        if fp is None:
            return SweepsPoll(sweeps, None, gone=True)
        if known is not None and fp == known:
            return SweepsPoll(sweeps, None)
        cells, class_acc = self.sweep_cell_runs(sweep_id, have_classes)
        return SweepsPoll(sweeps, SweepDetail(sweep_id, fp, cells, class_acc))

    def sweep_cell_runs(self, sweep_id: int, have_classes: frozenset[int] = frozenset()
                        ) -> tuple[list[CellRun], dict[int, list[float]]]:
        """The sweep's cells as ``CellRun`` (per-class vectors apart: run id -> the final
        one, for completed runs not in ``have_classes``). The same reading as the CLI's
        ``mfm sweep show``."""
        import dataclasses

        from mfm.sweeps.queueing import cell_runs

        cells = self._call(cell_runs, sweep_id, with_classes=True, known_classes=have_classes)
        class_acc = {c.run_id: list(c.class_acc) for c in cells
                     if c.run_id is not None and c.class_acc is not None}
        return [dataclasses.replace(c, class_acc=None) for c in cells], class_acc

    def arm_runs(self, sweep_id: int, arm: str) -> list[tuple[int, RunRecord | None]]:
        """An arm's cells in plan order: (seed, its run or None when none is linked)."""
        from mfm.store import sweeps as sweep_store

        return [(c.seed, c.run) for c in self._call(sweep_store.sweep_cells, sweep_id)
                if c.arm == arm]

    def read_sweep_file(self, path: str) -> SweepSpec:
        """A sweep file (or a bundled sweep by name) parsed; ServiceError with one line."""
        from mfm.sweeps.spec import SweepError, read_sweep

        if not path.strip():
            raise ServiceError("file: give a sweep file's path (or a bundled sweep's name)")
        try:
            return read_sweep(os.path.expanduser(path.strip()))
        except SweepError as e:
            raise ServiceError(str(e)) from None

    def plan_sweep(self, spec: SweepSpec, *, rerun_stale: bool = False) -> SweepPlan:
        """Every cell expanded, validated and matched against the records (reuse / stale /
        active / resume / failed / new) with the cost of the rest. Records nothing."""
        from mfm.runner.launch import code_version
        from mfm.sweeps.plan import plan_sweep
        from mfm.sweeps.spec import SweepError

        try:
            return self._call(plan_sweep, spec, code_version=code_version(),
                              rerun_stale=rerun_stale)
        except SweepError as e:
            raise ServiceError(str(e)) from None

    def queue_sweep(self, spec: SweepSpec, *, slot: str = "",
                    rerun_stale: bool = False) -> QueuedSweep:
        """Record the sweep and queue every cell no run answers, as ``mfm sweep run`` does:
        planned again now (the records may have moved since the preview), every cell to run
        checked (data, transfer source) before anything is recorded, new runs queued, the
        sweep and its cells saved with their runs, interrupted runs queued to resume, then a
        supervisor made sure of. All or nothing up to the resumes.

        The one queueing path, shared with ``mfm sweep run``: mfm.sweeps.queueing."""
        from mfm.runner.launch import code_version
        from mfm.sweeps.queueing import SweepQueueError, queue_sweep
        from mfm_tui.sweep_text import plan_summary

        plan = self.plan_sweep(spec, rerun_stale=rerun_stale)
        todo = plan.to_run
        try:
            queued = self._call(queue_sweep, plan, db_target=self.db_target,
                                runs_root=self.runs_root(), code_version=code_version(),
                                slot=slot)
        except SweepQueueError as e:
            raise ServiceError(str(e)) from None
        note = self.ensure_supervisor() if todo else "nothing to run"
        return QueuedSweep(queued.sweep_id, queued.name, queued.new_run_ids,
                           queued.resumed_run_ids, plan_summary(plan), note)
