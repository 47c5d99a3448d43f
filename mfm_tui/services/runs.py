"""Runs: the list, one run's new points and log, cancel / resume / delete, tags and notes,
and queueing new runs (through mfm.runner.control)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mfm_tui.services.backend import Backend, ServiceError, _check_name
from mfm_tui.services.results import (
    QueuedRuns,
    RunSeries,
)

if TYPE_CHECKING:
    from mfm.config import Config
    from mfm.store.records import RunRecord
    from mfm.store.views import Fingerprint, RunsDelta

CHART_STEP_KEYS = ("loss", "meta_loss", "weight_mean")


class RunServices(Backend):
    # -- runs ---------------------------------------------------------------------------------

    def list_runs(self) -> list[RunRecord]:
        from mfm.store import repo

        return self._call(repo.list_runs)

    def get_run(self, run_id: int) -> RunRecord | None:
        from mfm.store import repo

        return self._call(repo.get_run, run_id)

    def poll_runs(self, known: dict[int, Fingerprint] | None = None) -> RunsDelta:
        """The runs that are new or changed since ``known`` (id -> fingerprint from the last
        poll; None or {} = all of them), the ones that are gone, and queue positions: cheap
        whatever the number of runs (``mfm.store.views.runs_delta``)."""
        from mfm.store import views

        return self._call(views.runs_delta, known)

    def run_series(self, run_id: int, *, after_step: dict[str, int] | None = None,
                   after_epoch: int | None = None, class_epoch: int | None = None,
                   log_offset: int = 0, step_keys: Sequence[str] | None = None) -> RunSeries:
        """New points of a run: step metrics after ``after_step[key]``, epoch metrics after
        ``after_epoch``, the per-class vector when its epoch is later than ``class_epoch``, and
        log lines from ``log_offset`` (-1: no log); and its lineage (the run it starts from and
        the runs that start from it, ``train.init_from``), two small queries."""
        from mfm.store import repo

        run = self._call(repo.get_run, run_id)
        if run is None:
            raise ServiceError(f"no run {run_id} (deleted?)")
        after_step = after_step or {}
        keys = list(step_keys) if step_keys is not None else sorted(
            k for k in run.latest if k in CHART_STEP_KEYS
            or (k.startswith("mod/") and k.endswith(("/gamma_mean", "/beta_mean"))))
        steps: dict[str, list[tuple[int, float]]] = {}
        for key in keys:
            points = self._call(repo.get_step_series, run_id, key,
                                after_step=after_step.get(key))
            if points:
                steps[key] = [(p.step, p.value) for p in points]
        epochs = self._call(repo.get_epoch_series, run_id, after_epoch=after_epoch)
        class_acc = None
        if run.epoch is not None and (class_epoch is None or run.epoch > class_epoch):
            class_acc = self._call(repo.get_class_accuracy, run_id)
        lines, offset = self.read_log(run, log_offset) if log_offset >= 0 else ([], log_offset)
        parent = (self._call(repo.run_link, run.parent_id) if run.parent_id is not None
                  else None)
        children = tuple(self._call(repo.children, run_id))
        return RunSeries(run, steps, epochs, class_acc, lines, offset, parent, children)

    def read_log(self, run: RunRecord, offset: int = 0, *,
                 max_bytes: int = 64 * 1024) -> tuple[list[str], int]:
        """Complete lines of the run's log from ``offset`` (at most the last ``max_bytes`` of
        what is new); returns them and the offset to read from next."""
        from mfm import runfiles

        path = runfiles.log_path(self.runs_root(), run.id, run.log_path)
        try:
            size = os.path.getsize(path)
        except OSError:
            return [], offset
        if size < offset:  # truncated or replaced: start again
            offset = 0
        start = max(offset, size - max_bytes)
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(size - start)
        end = data.rfind(b"\n")
        if end < 0:
            return [], offset
        text = data[: end + 1].decode("utf-8", "replace")
        return text.splitlines(), start + end + 1

    def cancel_run(self, run_id: int) -> str:
        """Queued: cancelled at once. Running: SIGTERM here, scancel for a Slurm job, or a
        request its host's supervisor acts on (mfm.runner.control, as ``mfm cancel``)."""
        (done,) = self._act(self.control.cancel, [run_id])
        return {
            "cancelled": f"run {run_id} cancelled (it was queued)",
            "signalled": f"run {run_id}: SIGTERM sent; it stops after its current step",
            "requested": f"run {run_id}: cancel requested; the supervisor on {done.host} acts "
                         f"on it",
            "job-requested": f"run {run_id}: cancel requested; the Slurm worker cancels job "
                             f"{done.job_id}",
            "job-retry": f"run {run_id}: scancel {done.job_id} failed ({done.why}); the Slurm "
                         f"worker tries again",
            "job-cancelled-unstarted": f"run {run_id} cancelled (Slurm job {done.job_id} had "
                                       f"not started it)",
            "job-cancelled": f"run {run_id}: Slurm job {done.job_id} cancelled; it stops after "
                             f"its current step",
        }[done.outcome]

    def resume_run(self, run_id: int) -> str:
        """Queue an interrupted run again (refused, as by ``mfm resume``, when its checkpoint
        is gone and it recorded epochs)."""
        done = self._act(self.control.resume, run_id)
        what = ("to start again from epoch 1" if done.start_over
                else f"to resume after epoch {done.after_epoch}/{done.epochs_total}")
        return (f"run {run_id} queued {what} (attempt {done.attempt}; "
                f"{self._note(done.supervisor)})")

    def delete_run(self, run_id: int) -> str:
        """Delete a run and its metrics; refused while it is starting or running."""
        from mfm.store import repo
        from mfm.store.records import ACTIVE

        rec = self._call(repo.get_run, run_id)
        if rec is None:
            raise ServiceError(f"no run {run_id}")
        if rec.status in ACTIVE:
            raise ServiceError(f"run {run_id} is {rec.status}: cancel it before deleting it")
        self._call(repo.delete_run, run_id)
        return f"run {run_id} deleted"

    def set_tags(self, run_id: int, add: Sequence[str] = (),
                 remove: Sequence[str] = ()) -> tuple[str, ...]:
        """Add and remove tags of a run; its tags afterwards. ServiceError for a bad tag."""
        from mfm.store import repo

        try:
            return self._call(repo.set_tags, run_id, add=add, remove=remove)
        except ValueError as e:
            raise ServiceError(str(e)) from None

    def set_note(self, run_id: int, note: str) -> None:
        """A run's free-text note ("" clears it)."""
        from mfm.store import repo

        try:
            self._call(repo.set_note, run_id, note or None)
        except ValueError as e:
            raise ServiceError(str(e)) from None

    def run_labels(self) -> dict[int, tuple[tuple[str, ...], str | None]]:
        """Run id -> (tags, note) of the runs that have either (``mfm.store.views``)."""
        from mfm.store import views

        return self._call(views.run_labels)

    def run_sweeps(self) -> dict[int, tuple[str, ...]]:
        """Run id -> names of the sweeps it answers a cell of."""
        from mfm.store import views

        return self._call(views.run_sweeps)

    # -- queueing -----------------------------------------------------------------------------

    def compose(self, *, dataset_spec: dict[str, Any] | None,
                named_config: dict[str, Any] | None, overrides: Sequence[str] = ()) -> Config:
        """The validated Config (raises mfm.config.ConfigError). Pure: no records touched."""
        from mfm.specs import compose

        return compose(dataset_spec=dataset_spec, named_config=named_config,
                       overrides=list(overrides))

    def slot_names(self) -> list[str]:
        """Slots a queued run can ask for: the serving supervisor's, else the defaults'."""
        from mfm.runner.launch import default_slot_names, serving_slots

        return serving_slots(self.db, self.db_target, self.runs_root()) or default_slot_names()

    def queue_runs(self, configs: Sequence[Config], names: Sequence[str | None],
                   dataset_spec_id: int | None = None,
                   config_id: int | None = None, slot: str = "") -> QueuedRuns:
        """Queue each validated Config as ``mfm run`` does: preflight checks, enqueue with the
        code version, the checkpoint folder, then make sure a supervisor serves the records.
        Every config is checked before any is queued. ``slot``: '' = any."""
        for name in names:
            if name is not None:
                _check_name("name", name)
        queued = self._act(self.control.queue, configs, names, dataset_spec_id=dataset_spec_id,
                           config_id=config_id, slot=slot)
        return QueuedRuns(queued.run_ids, self._note(queued.supervisor))
