"""The app's only door to the records and the runner (``mfm.store``, ``mfm.runner``).

Every method blocks (SQL, files, processes), so the UI calls them from thread workers only.
They return plain values: the store's frozen dataclasses (``mfm.store.records``,
``mfm.store.views``), dicts, lists and the small frozen dataclasses below; no session, ORM row
or query is written here (the store's functions are). Importing anything from ``mfm.store``
loads SQLAlchemy, so it happens inside the methods, on first use: building a ``Services``
costs nothing and the first frame is not kept waiting (the store's types are imported for
annotations only).

A test builds one on a temporary database with a fixed clock, a fixed time zone and no GPU
probe, and hands it to the app's constructor.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from mfm.text import check_name

if TYPE_CHECKING:
    from mfm.config import Config
    from mfm.runner.control import RunControl, SupervisorNote
    from mfm.store.db import Database
    from mfm.store.records import ConfigRecord, DatasetSpecRecord, RunRecord
    from mfm.store.sweeps import SweepRecord
    from mfm.store.views import ConfigUse, Fingerprint, RunsDelta
    from mfm.sweeps.plan import SweepPlan
    from mfm.sweeps.spec import SweepSpec
    from mfm.sweeps.table import CellRun

__all__ = ["ServiceError", "Services", "check_target", "RunSeries", "StatusInfo", "QueuedRuns",
           "SweepDetail", "SweepsPoll", "QueuedSweep", "split_config"]

P = ParamSpec("P")
T = TypeVar("T")

CHART_STEP_KEYS = ("loss", "meta_loss", "weight_mean")


class ServiceError(Exception):
    """Something the user can act on; the message is one line."""


@dataclass(frozen=True)
class RunSeries:
    """New points of one run since the cursors the caller passed (see ``run_series``)."""

    run: RunRecord
    steps: dict[str, list[tuple[int, float]]]      # key -> [(step, value)] after the cursor
    epochs: dict[str, list[tuple[int, float]]]     # key -> [(epoch, value)] after the cursor
    class_acc: list[float] | None                  # the latest per-class vector, if new
    log_lines: list[str]                           # new log lines
    log_offset: int                                # byte offset to pass next time


@dataclass(frozen=True)
class StatusInfo:
    supervisor: dict[str, Any] | None   # the lock holder's info, None when nobody serves
    slots_busy: int
    slots_total: int
    gpus: list[dict[str, float]]        # per GPU: index, util, mem_used, mem_total
    counts: dict[str, int]              # runs by status


@dataclass(frozen=True)
class QueuedRuns:
    run_ids: tuple[int, ...]
    supervisor: str                     # what happened about the supervisor, one line


@dataclass(frozen=True)
class SweepDetail:
    """One sweep's cells as the arm table needs them (``mfm.sweeps.table.CellRun``)."""

    sweep_id: int
    fingerprint: Fingerprint                # pass it to the next poll: unchanged, no re-read
    cells: list[CellRun]                    # class_acc left None: see ``class_acc``
    class_acc: dict[int, list[float]]       # run id -> final per-class accuracy, newly read


@dataclass(frozen=True)
class SweepsPoll:
    sweeps: list[SweepRecord]               # every sweep with its progress, newest first
    detail: SweepDetail | None              # the chosen sweep's cells; None when unchanged
    gone: bool = False                      # the chosen sweep is no longer in the records


@dataclass(frozen=True)
class QueuedSweep:
    sweep_id: int
    name: str
    new_run_ids: tuple[int, ...]            # runs queued for cells nothing answered
    resumed: tuple[int, ...]                # interrupted runs queued again to resume
    summary: str                            # the plan in one line
    supervisor: str                         # what happened about the supervisor, one line


def _check_name(what: str, name: str) -> None:
    """ServiceError with mfm.text.check_name's reason when ``name`` cannot name a record."""
    why = check_name(what, name)
    if why is not None:
        raise ServiceError(why)


def check_target(target: str) -> None:
    """Refuse at once, before the first frame, a SQLite file the records cannot live in: a
    directory, a file that is not SQLite, a folder that does not exist. ServiceError with one
    line naming the file. Other targets (URLs of other backends, ``file:`` URIs) are left to
    ``open``. The rule is mfm.store.paths' (no SQLAlchemy: the first frame stays fast), the
    one the store applies again when it opens the file."""
    from mfm.store.paths import sqlite_file, sqlite_file_problem

    found = sqlite_file(target)
    if found is not None and (problem := sqlite_file_problem(*found)) is not None:
        raise ServiceError(problem)


class Services:
    """The backend of mfm-tui, for one database target.

    ``runs_root``: checkpoints and logs (default: as ``mfm`` decides, honouring MFM_RUNS_DIR).
    ``clock`` / ``localtime``: "now" and how timestamps become wall-clock fields (tests pass
    fixed ones). ``gpu_probe``: per-GPU utilisation (default NVML). ``start_supervisor``:
    whether queueing starts a detached supervisor when none serves the database;
    ``supervisor_args``: its ``mfm worker`` options (default: the runner's
    ``DEFAULT_SUPERVISOR_ARGS``, as ``mfm run`` starts it).
    """

    def __init__(self, db_target: str, *, runs_root: str | Path | None = None,
                 clock: Callable[[], float] = time.time,
                 localtime: Callable[[float], time.struct_time] = time.localtime,
                 gpu_probe: Callable[[], list[dict[str, float]]] | None = None,
                 start_supervisor: bool = True,
                 supervisor_args: Sequence[str] | None = None):
        self.db_target = db_target
        self._runs_root = Path(runs_root) if runs_root is not None else None
        self.clock = clock
        self.localtime = localtime
        self._gpu_probe = gpu_probe
        self.start_supervisor = start_supervisor
        self.supervisor_args = list(supervisor_args) if supervisor_args is not None else None
        self._db: Database | None = None
        self._control: RunControl | None = None
        self._lock = threading.Lock()
        self.started_supervisors: list[int] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def display(self) -> str:
        """The database as shown to the user (its file name, or the URL)."""
        from mfm.store.paths import sqlite_path

        target = sqlite_path(self.db_target)
        return target if "://" in target else os.path.basename(target) or target

    def open(self) -> None:
        """Open the records (creating or migrating the schema). ServiceError with one line
        for a file that is not SQLite, a newer schema, a missing directory..."""
        with self._lock:
            if self._db is not None:
                return
            from mfm.store import Database, StoreError

            try:
                self._db = Database(self.db_target)
            except StoreError as e:
                raise ServiceError(str(e)) from None
            except Exception as e:  # noqa: BLE001 — whatever the driver says, one line
                raise ServiceError(f"cannot open {self.db_target}: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                   ) from None

    @property
    def db(self) -> Database:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    @property
    def control(self) -> RunControl:
        """The run control of this database (mfm.runner.control: the rules of queue, cancel
        and resume that ``mfm`` follows too)."""
        if self._control is None:
            from mfm.runner.control import RunControl
            from mfm.runner.serve import ON_DEMAND, parse_args

            spec = ON_DEMAND if self.supervisor_args is None else parse_args(
                self.supervisor_args)
            self._control = RunControl(self.db, db_target=self.db_target,
                                       runs_root=self.runs_root(), supervisor=spec,
                                       start_supervisor=self.start_supervisor)
        return self._control

    def close(self) -> None:
        with self._lock:
            self._control = None
            if self._db is not None:
                self._db.close()
                self._db = None

    def runs_root(self) -> Path:
        if self._runs_root is not None:
            return self._runs_root
        from mfm.store.paths import runs_root

        return runs_root(self.db_target, os.environ)

    def now(self) -> float:
        return self.clock()

    def _call(self, fn: Callable[Concatenate[Database, P], T], *args: P.args,
              **kwargs: P.kwargs) -> T:
        """Run a store function, turning its errors into one-line ServiceErrors."""
        from mfm.store import StoreError

        try:
            return fn(self.db, *args, **kwargs)
        except StoreError as e:
            raise ServiceError(str(e)) from None

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
        log lines from ``log_offset`` (-1: no log)."""
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
        return RunSeries(run, steps, epochs, class_acc, lines, offset)

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

    def _act(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A run-control action; its refusal (or the records' fault) as a ServiceError."""
        from mfm.runner.control import ControlError
        from mfm.store import StoreError

        try:
            return fn(*args, **kwargs)
        except ControlError as e:
            named = e.field is not None and e.field not in ("run", "sweep")
            raise ServiceError(f"{e.field}: {e.message}" if named else e.message) from None
        except StoreError as e:
            raise ServiceError(str(e)) from None

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

    def ensure_supervisor(self) -> str:
        """Start a detached supervisor if none serves this database on this host (unless
        this app was built with ``start_supervisor=False``)."""
        return self._note(self._act(self.control.ensure_supervisor))

    def _note(self, note: SupervisorNote) -> str:
        started = note.state == "started" and note.pid is not None
        if started and note.pid is not None:
            self.started_supervisors.append(note.pid)
        return {
            "started": f"started a supervisor, pid {note.pid}",
            "serving": f"supervisor pid {note.pid} serves it",
            "none": "no supervisor serves this database (start one: mfm worker --detach)",
            "elsewhere": f"the supervisor of host {note.host} starts it",
            "slurm": "a Slurm worker takes it",
            "slurm-unserved": "no Slurm worker serves this database yet (mfm worker "
                              "--executor slurm --detach)",
        }[note.state]

    # -- dataset specs ------------------------------------------------------------------------

    def list_dataset_specs(self) -> list[DatasetSpecRecord]:
        from mfm.store import repo

        return self._call(repo.list_dataset_specs)

    def get_dataset_spec(self, name: str) -> DatasetSpecRecord | None:
        from mfm.store import repo

        return self._call(repo.get_dataset_spec, name)

    def save_dataset_spec(self, name: str, spec: dict[str, Any]) -> int:
        from mfm.config import ConfigError
        from mfm.specs import check_dataset_spec
        from mfm.store import repo

        if not name.strip():
            raise ServiceError("name: a dataset spec needs a name")
        _check_name("name", name.strip())
        try:
            check_dataset_spec(spec)
        except ConfigError as e:
            raise ServiceError(str(e)) from None
        self.check_buildable(spec)
        return self._call(repo.save_dataset_spec, name.strip(), spec)

    def check_buildable(self, spec: dict[str, Any]) -> None:
        """ServiceError when the split a spec describes cannot be built from its data (an
        imbalance factor that leaves the rarest class no image, a meta split larger than a
        class...): ``preview_counts`` says so. Data that is not on this machine (key
        ``data.root``: not downloaded, a folder elsewhere) is not a reason to refuse: runs
        may be served where it is."""
        from mfm.config import ConfigError

        try:
            self.preview_counts(spec)
        except ConfigError as e:
            if e.key != "data.root":
                raise ServiceError(str(e)) from None

    def delete_dataset_spec(self, name: str) -> str:
        from mfm.store import repo

        self._call(repo.delete_dataset_spec, name)
        return f"dataset spec {name!r} deleted (runs that used it keep their frozen config)"

    def preview_counts(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Per-class train/meta/test counts of a dataset spec, without torch. Raises
        mfm.config.ConfigError for an invalid spec or missing data."""
        from mfm.data.sources import preview_counts
        from mfm.specs import check_dataset_spec

        return preview_counts(check_dataset_spec(spec).data)

    # -- named configs ------------------------------------------------------------------------

    def list_configs(self) -> list[ConfigRecord]:
        from mfm.store import repo

        return self._call(repo.list_configs)

    def get_config(self, name: str, version: int | None = None) -> ConfigRecord | None:
        from mfm.store import repo

        return self._call(repo.get_config, name, version)

    def config_use(self, name: str) -> ConfigUse | None:
        """The latest version of a named config and the runs that use any of its versions."""
        from mfm.store import views

        return self._call(views.config_use, name)

    def save_config(self, name: str, config: dict[str, Any]) -> tuple[ConfigRecord, str]:
        """Save a named config. Changed content becomes a new version, so runs that used an
        earlier one keep pointing at what they ran with. Returns (record, what happened)."""
        from mfm.config import ConfigError
        from mfm.specs import check_named_config
        from mfm.store import repo

        name = name.strip()
        if not name:
            raise ServiceError("name: a config needs a name")
        if "@" in name:
            raise ServiceError("name: '@' is reserved for versions (NAME@VERSION)")
        _check_name("name", name)
        try:
            check_named_config(config)
        except ConfigError as e:
            raise ServiceError(str(e)) from None
        before = self.get_config(name)
        rec = self._call(repo.save_config, name, config)
        if before is None:
            return rec, f"config {name!r} saved (version 1)"
        if rec.version == before.version:
            return rec, f"config {name!r} unchanged (version {rec.version})"
        use = self.config_use(name)
        used = f"; runs {', '.join(map(str, use.run_ids))} keep their earlier versions" \
            if use and use.run_ids else ""
        return rec, f"config {name!r} saved as version {rec.version}{used}"

    def delete_config(self, name: str) -> str:
        """Delete every version of a named config; refused while runs reference one."""
        from mfm.store import views

        use = self._call(views.delete_config, name)
        return f"config {name!r} deleted ({use.version} version(s))"

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
        from mfm.store import sweeps as sweep_store
        from mfm.sweeps.table import CellRun

        records = self._call(sweep_store.sweep_cells, sweep_id)
        want = [c.run.id for c in records if c.run is not None
                and c.run.status == "completed" and c.run.id not in have_classes]
        class_acc = self._call(sweep_store.final_class_accuracy, want) if want else {}
        cells = []
        for c in records:
            r = c.run
            counts = (r.class_counts or {}) if r is not None else {}
            cells.append(CellRun(arm=c.arm, seed=c.seed, run_id=None if r is None else r.id,
                                 status=None if r is None else r.status,
                                 summary=None if r is None else r.summary,
                                 train_counts=counts.get("train"),
                                 class_names=counts.get("classes")))
        return cells, class_acc

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

    # -- status -------------------------------------------------------------------------------

    def status(self) -> StatusInfo:
        """Supervisor, slots, GPUs and run counts for the status bar."""
        import socket

        from mfm.runner.launch import serving

        holder = serving(self.db_target, self.runs_root())
        busy = total = 0
        if holder is not None:
            host = holder.get("host") or socket.gethostname()
            for w in self._act(self.control.workers):
                if w.host == host and w.stopped_at is None:
                    total = len(w.slots)
                    busy = sum(1 for s in w.slots if s.get("run") is not None)
            if not total:
                total = len(holder.get("slots") or [])
        counts = self._act(self.control.run_counts)
        return StatusInfo(holder, busy, total, self.gpus(), counts)

    def gpus(self) -> list[dict[str, float]]:
        if self._gpu_probe is not None:
            return self._gpu_probe()
        from mfm.runner.gpus import gpu_utilisation

        try:
            return gpu_utilisation()
        except Exception:  # noqa: BLE001 — NVML errors must not break the status bar
            return []


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A resolved run config -> (its dataset spec, its named config)."""
    from mfm.specs import split_dataset_spec

    return split_dataset_spec(config)
