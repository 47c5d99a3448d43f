"""Run control: the one home of the rules for acting on runs, below every front end.

``mfm`` (run, cancel, resume, logs), ``mfm sweep`` (run, cancel, resume) and mfm-tui all call
:class:`RunControl`; they only turn its results (plain frozen dataclasses) and its errors
(:class:`ControlError` and subclasses, with fields) into words and exit codes. So the same
action gives the same outcome from any of them: a cancel scancels a Slurm job whoever asks,
a resume is refused when its checkpoint is gone whoever asks, and a supervisor is started the
same way whoever queues.

Torch-free: mfm-tui imports it.
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfm import runfiles
from mfm.runner.procs import host_name, is_alive, signal_group
from mfm.runner.serve import ON_DEMAND, SupervisorSpec
from mfm.specs import ConfigRefError, parse_config_ref
from mfm.store import queue, repo
from mfm.store import sweeps as sweep_store
from mfm.store.records import LIVE, RESUMABLE

if TYPE_CHECKING:
    from mfm.config import Config
    from mfm.store import Database
    from mfm.store.queue import WorkerRecord
    from mfm.store.records import ConfigRecord, DatasetSpecRecord, RunRecord
    from mfm.store.sweeps import SweepRecord

__all__ = ["RunControl", "ControlError", "NoSuchRun", "NotCancellable", "NotResumable",
           "CheckpointGone", "CheckpointDamaged", "ForeignFolder", "NoSuchSweep",
           "UnknownReference", "BadReference",
           "QueueRefused", "SupervisorNote", "Queued", "Cancelled", "Resumed",
           "SweepCancelled", "SweepResumed"]


#: the largest id a record can have (a signed 64-bit integer in SQLite and PostgreSQL)
MAX_ID = 2**63 - 1


# -- errors ----------------------------------------------------------------------------------

class ControlError(Exception):
    """An action refused; nothing was changed. ``field``: what the user gave that is at
    fault, in neutral words ("run", "sweep", "config", "dataset", "slot", "host", or a config
    key such as "data.root"); ``message``: what is wrong, without naming the field."""

    def __init__(self, message: str, *, field: str | None = None):
        self.field, self.message = field, message
        super().__init__(message)


class NoSuchRun(ControlError):
    def __init__(self, run_id: int, where: str):
        self.run_id, self.where = run_id, where
        super().__init__(f"no run {run_id} in {where} (see mfm runs)", field="run")


class NotCancellable(ControlError):
    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        super().__init__(f"run {run_id} is already {status}; nothing to cancel", field="run")


class NotResumable(ControlError):
    def __init__(self, run_id: int, status: str):
        self.run_id, self.status = run_id, status
        hint = {"completed": "it finished; nothing to resume",
                "queued": "it is already queued"}.get(status, "it is still active")
        super().__init__(f"run {run_id} is {status}: {hint} (resumable: "
                         f"{' | '.join(RESUMABLE)})", field="run")


class CheckpointGone(ControlError):
    """A resume would train from scratch over recorded epochs: refused."""

    def __init__(self, run_id: int, path: str, epochs: int):
        self.run_id, self.path, self.epochs = run_id, path, epochs
        super().__init__(f"run {run_id} cannot resume: its checkpoint ({path}) is missing, "
                         f"and training from scratch would overwrite its {epochs} recorded "
                         f"epoch(s); start a new run instead", field="run")


class CheckpointDamaged(ControlError):
    """A resume from a checkpoint that would not load (or would run code): refused."""

    def __init__(self, run_id: int, path: str, why: str):
        self.run_id, self.path, self.why = run_id, path, why
        super().__init__(f"run {run_id} cannot resume: {path} is damaged ({why}); restore it "
                         f"from a backup or start a new run", field="run")


class ForeignFolder(ControlError):
    """The run's folder belongs to other records (this database is a copy of them): resuming
    would read and overwrite their checkpoint. Refused."""

    def __init__(self, run_id: int, folder: str, owner: str):
        self.run_id, self.folder, self.owner = run_id, folder, owner
        super().__init__(f"run {run_id} cannot resume here: its folder {folder} belongs to the "
                         f"records at {owner} (these records are a copy); resume it there, or "
                         f"copy the folder and point MFM_RUNS_DIR at the copy", field="run")


class NoSuchSweep(ControlError):
    def __init__(self, ref: str, where: str):
        self.ref, self.where = ref, where
        from mfm.text import visible

        super().__init__(f"no sweep {visible(repr(ref), 80)} in {visible(where)} (see mfm "
                         f"sweep list)", field="sweep")


class BadReference(ControlError):
    """A config reference that is not NAME or NAME@VERSION."""

    def __init__(self, text: str, why: str):
        self.text = text
        super().__init__(why, field="config")


class UnknownReference(ControlError):
    """No saved dataset spec or config by that name (``kind``: dataset | config)."""

    def __init__(self, kind: str, text: str, have: Sequence[str]):
        from mfm.text import visible

        self.kind, self.text, self.have = kind, text, tuple(have)
        what = "dataset spec" if kind == "dataset" else "config"
        names = ", ".join(have) or "none saved"
        super().__init__(f"no {what} {visible(repr(text), 80)} (have: {visible(names, 300)})",
                         field=kind)


class QueueRefused(ControlError):
    """Nothing was queued: a slot, host, data or transfer check failed."""


# -- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SupervisorNote:
    """What serves a queued run. ``state``: started (a supervisor was started here, ``pid``),
    serving (one already serves here, ``pid``), none (none serves and none was started),
    elsewhere (pinned to ``host``, whose supervisor takes it), slurm (a Slurm worker serves
    it), slurm-unserved (no Slurm worker serves this database yet)."""

    state: str
    pid: int | None = None
    host: str | None = None


@dataclass(frozen=True)
class Queued:
    run_ids: tuple[int, ...]
    positions: dict[int, int]           # run id -> place in the queue (1 = next)
    supervisor: SupervisorNote


@dataclass(frozen=True)
class Cancelled:
    """One run's cancel. ``outcome``: cancelled (it was waiting: done now), signalled
    (SIGTERM sent to its process here), requested (its supervisor on ``host`` acts),
    job-cancelled (its Slurm job was scancelled), job-cancelled-unstarted (scancelled
    before its run started: recorded cancelled now), job-requested (no scancel here: the
    Slurm worker cancels it), job-retry (scancel failed, ``why``; the Slurm worker tries
    again)."""

    run_id: int
    outcome: str
    host: str | None = None
    job_id: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class Resumed:
    run_id: int
    after_epoch: int                     # epochs done (0: starts again from epoch 1)
    epochs_total: int
    attempt: int
    start_over: bool                     # no recorded epoch and no checkpoint
    supervisor: SupervisorNote


@dataclass(frozen=True)
class SweepCancelled:
    sweep_id: int
    runs: tuple[Cancelled, ...]


@dataclass(frozen=True)
class SweepResumed:
    sweep_id: int
    run_ids: tuple[int, ...]                         # queued again
    skipped: tuple[tuple[int, str, str], ...]        # (run id, status, why) left as they are
    supervisor: SupervisorNote | None                # None when nothing was queued


# -- the control -----------------------------------------------------------------------------

class RunControl:
    """Acting on the runs of one database. ``supervisor``: how a supervisor started on
    demand serves (default: exits after 10 idle minutes); ``start_supervisor=False`` never
    starts one (tests, or a user who runs ``mfm worker`` by hand)."""

    def __init__(self, db: Database, *, db_target: str, runs_root: Path,
                 supervisor: SupervisorSpec = ON_DEMAND, start_supervisor: bool = True):
        self.db, self.db_target, self.runs_root = db, db_target, runs_root
        self.supervisor, self.start_supervisor = supervisor, start_supervisor

    # -- reading --------------------------------------------------------------------------

    def run(self, run_id: int) -> RunRecord:
        if not 0 < run_id <= MAX_ID:  # past a SQL bigint: no such run (not an overflow)
            raise NoSuchRun(run_id, self.db.display)
        rec = repo.get_run(self.db, run_id)
        if rec is None:
            raise NoSuchRun(run_id, self.db.display)
        return rec

    def sweep(self, ref: str) -> SweepRecord:
        rec = sweep_store.get_sweep(self.db, ref)
        if rec is None:
            raise NoSuchSweep(ref, self.db.display)
        return rec

    def log_path(self, run: RunRecord) -> Path:
        return runfiles.log_path(self.runs_root, run.id, run.log_path)

    def queue_positions(self) -> dict[int, int]:
        return queue.queue_positions(self.db)

    def workers(self) -> list[WorkerRecord]:
        return queue.list_workers(self.db)

    def active_runs(self) -> list[RunRecord]:
        return queue.active_runs(self.db)

    def run_counts(self) -> dict[str, int]:
        return queue.count_by_status(self.db)

    # -- references -----------------------------------------------------------------------

    def dataset_spec(self, name: str) -> DatasetSpecRecord:
        rec = repo.get_dataset_spec(self.db, name)
        if rec is None:
            raise UnknownReference("dataset", name,
                                   [r.name for r in repo.list_dataset_specs(self.db)])
        return rec

    def named_config(self, text: str) -> ConfigRecord:
        """``NAME`` (its latest version) or ``NAME@VERSION``."""
        try:
            ref = parse_config_ref(text)
        except ConfigRefError as e:
            raise BadReference(text, str(e)) from None
        rec = repo.get_config(self.db, ref.name, ref.version)
        if rec is None:
            raise UnknownReference("config", text, [r.name for r in repo.list_configs(self.db)])
        return rec

    def compose(self, *, dataset: str | None, config: str | None, config_file: str | None,
                overrides: Sequence[str]) -> tuple[Config, dict[str, int]]:
        """A run config from saved specs, a file and overrides; and the record ids it came
        from (``dataset_spec_id``, ``config_id``). mfm.config.ConfigError for bad settings."""
        from mfm.specs import compose

        refs: dict[str, int] = {}
        spec = named = None
        if dataset:
            drec = self.dataset_spec(dataset)
            spec, refs["dataset_spec_id"] = drec.spec, drec.id
        if config:
            crec = self.named_config(config)
            named, refs["config_id"] = crec.config, crec.id
        cfg = compose(dataset_spec=spec, named_config=named, config_file=config_file,
                      overrides=list(overrides))
        return cfg, refs

    # -- queueing and recording -----------------------------------------------------------

    def queue(self, configs: Sequence[Config], names: Sequence[str | None], *,
              dataset_spec_id: int | None = None, config_id: int | None = None,
              slot: str = "", host: str = "") -> Queued:
        """Queue one run per validated config (all checked first; all or nothing), then
        make sure something serves them."""
        from mfm.runner.submit import SubmitError, submit_runs

        try:
            ids = submit_runs(self.db, db_target=self.db_target, runs_root=self.runs_root,
                              configs=configs, names=names, dataset_spec_id=dataset_spec_id,
                              config_id=config_id, slot=slot, host=host)
        except SubmitError as e:
            field, sep, rest = str(e).partition(": ")
            simple = sep and " " not in field
            raise QueueRefused(rest if simple else str(e),
                               field=field if simple else None) from None
        first = repo.get_run(self.db, ids[0]) if ids else None
        note = self.serve_for(first.want_slot if first else None,
                              first.want_host if first else None)
        return Queued(tuple(ids), self.queue_positions(), note)

    def record_here(self, cfg: Config, name: str | None, refs: dict[str, int]) -> int:
        """Record a run this process trains (``mfm run --headless``): status created, its
        checkpoint folder and the code version, as a queued run gets them."""
        from mfm.config import config_to_dict

        run_id = repo.create_run(self.db, config=config_to_dict(cfg),
                                 epochs_total=cfg.train.epochs, name=name, status="created",
                                 **refs)
        self.claim_here(run_id)
        return run_id

    def claim_here(self, run_id: int, *, resume: bool = False) -> Path:
        """Take ``run_id`` for this process: with ``resume``, an interrupted run queued again
        as created (no supervisor claims it); its checkpoint folder and this code version
        recorded. Returns the checkpoint folder."""
        from mfm.runner.launch import code_version

        if resume:
            rec = self.run(run_id)
            if rec.status not in RESUMABLE:
                raise NotResumable(run_id, rec.status)
            self._check_checkpoint(rec)
            self._request_resume(run_id, to="created")
        ckpt_dir = self.runs_root / str(run_id)
        repo.update_run(self.db, run_id, checkpoint_dir=str(ckpt_dir),
                        code_version=code_version())
        return ckpt_dir

    def serve_for(self, want_slot: str | None, want_host: str | None) -> SupervisorNote:
        """Make sure something serves a run queued for ``want_slot`` on ``want_host``."""
        if want_slot == "slurm":
            served = any(w.stopped_at is None and (not want_host or w.host == want_host)
                         and any(str(s.get("name", "")).startswith("slurm.") for s in w.slots)
                         for w in self.workers())
            return SupervisorNote("slurm" if served else "slurm-unserved", host=want_host)
        if want_host and want_host != host_name():
            return SupervisorNote("elsewhere", host=want_host)
        return self.ensure_supervisor()

    def ensure_supervisor(self) -> SupervisorNote:
        """The supervisor serving this database on this host; one started detached (with
        ``self.supervisor``) if none does and starting is allowed."""
        from mfm.runner.launch import serving, start_detached_supervisor

        holder = serving(self.db_target, self.runs_root)
        if holder is not None:
            return SupervisorNote("serving", pid=int(holder.get("pid") or 0))
        if not self.start_supervisor:
            return SupervisorNote("none")
        pid = start_detached_supervisor(self.db_target, self.runs_root,
                                        self.supervisor.to_args())
        return SupervisorNote("started", pid=pid)

    # -- cancel ---------------------------------------------------------------------------

    def cancel(self, run_ids: Sequence[int]) -> list[Cancelled]:
        """Cancel runs: every id is checked first (an unknown or finished one changes
        nothing). A waiting run is cancelled at once; a running one here gets SIGTERM (its
        process group; its supervisor escalates after the grace period); a Slurm job is
        scancelled; a run of another host is left to its supervisor."""
        run_ids = list(dict.fromkeys(run_ids))  # `mfm cancel 5 5` cancels run 5 once
        for run_id in run_ids:
            rec = self.run(run_id)
            if rec.status not in LIVE:
                raise NotCancellable(run_id, rec.status)
        return [self._cancel_one(run_id) for run_id in run_ids]

    def _cancel_one(self, run_id: int) -> Cancelled:
        try:
            what = queue.request_cancel(self.db, run_id)
        except queue.QueueError:  # it ended between the check and now
            rec = self.run(run_id)
            raise NotCancellable(run_id, rec.status) from None
        if what == "cancelled":
            return Cancelled(run_id, "cancelled")
        rec = self.run(run_id)
        if rec.job_id:
            return self._cancel_job(rec)
        if rec.host == host_name() and rec.pid and is_alive(rec.pid, rec.proc_start):
            signal_group(rec.pid, signal.SIGTERM)  # the supervisor escalates if needed
            return Cancelled(run_id, "signalled", host=rec.host)
        if rec.host in (None, host_name()):  # the process is gone: a supervisor settles it
            self.ensure_supervisor()
        return Cancelled(run_id, "requested", host=rec.host)

    def _cancel_job(self, rec: RunRecord) -> Cancelled:
        """A run held by a Slurm job: scancel it here when Slurm's commands are here (else
        the Slurm worker does); a job that has not started its run yet is recorded cancelled
        now."""
        job = rec.job_id
        if not shutil.which("scancel"):
            return Cancelled(rec.id, "job-requested", job_id=job)
        from mfm.runner.slurm import scancel

        why = scancel(str(job))
        if why is not None:
            return Cancelled(rec.id, "job-retry", job_id=job, why=why)
        if rec.status == "starting" and queue.transition(
                self.db, rec.id, "cancelled", allowed_from=("starting",),
                error=f"cancelled: Slurm job {job} cancelled before the run started"):
            return Cancelled(rec.id, "job-cancelled-unstarted", job_id=job)
        return Cancelled(rec.id, "job-cancelled", job_id=job)

    def cancel_sweep(self, ref: str) -> SweepCancelled:
        """Cancel every waiting or running run of a sweep (finished runs stay)."""
        rec = self.sweep(ref)
        done: list[Cancelled] = []
        for c in sweep_store.sweep_cells(self.db, rec.id):
            if c.run is None or c.run.status not in LIVE:
                continue
            try:
                done.append(self._cancel_one(c.run.id))
            except NotCancellable:
                continue  # it finished meanwhile
        return SweepCancelled(rec.id, tuple(done))

    # -- resume ---------------------------------------------------------------------------

    def _served_elsewhere(self) -> bool:
        """Does a live supervisor of another host serve this database? (It may see a
        checkpoint this host cannot: the resume then waits in the queue for a host that
        can read it.)"""
        here = host_name()
        return any(w.host != here and w.stopped_at is None for w in self.workers())

    def _check_checkpoint(self, rec: RunRecord, *, elsewhere: bool | None = None) -> None:
        """Refuse a resume that would train from scratch over recorded epochs, or from a
        checkpoint that is damaged, or from a folder that belongs to other records (this
        database is a copy of those)."""
        if rec.checkpoint_dir and (owner := runfiles.foreign_owner(
                rec.checkpoint_dir, self.db.identity)) is not None:
            raise ForeignFolder(rec.id, rec.checkpoint_dir, owner)
        if rec.checkpoint_dir and runfiles.has_checkpoint(rec.checkpoint_dir):
            path = runfiles.last_checkpoint(rec.checkpoint_dir)
            why = runfiles.checkpoint_problem(path)
            if why is not None:
                raise CheckpointDamaged(rec.id, str(path), why)
            return
        if rec.epoch is None:
            return
        if elsewhere is None:
            elsewhere = self._served_elsewhere()
        if elsewhere:
            return
        where = (str(runfiles.last_checkpoint(rec.checkpoint_dir)) if rec.checkpoint_dir
                 else "no checkpoint folder")
        raise CheckpointGone(rec.id, where, rec.epoch + 1)

    def _request_resume(self, run_id: int, **kwargs: Any) -> RunRecord:
        try:
            return queue.request_resume(self.db, run_id, **kwargs)
        except queue.QueueError:  # its state moved between the check and now
            raise NotResumable(run_id, self.run(run_id).status) from None

    def resume(self, run_id: int, *, host: str | None = None) -> Resumed:
        """Queue a cancelled, failed or lost run again, to continue from its last checkpoint
        (or from the start when it recorded no epoch). ``host``: pin it to that host, or
        "any" (default: the pin it had)."""
        rec = self.run(run_id)
        if rec.status not in RESUMABLE:
            raise NotResumable(run_id, rec.status)
        self._check_checkpoint(rec)
        pin: dict[str, Any] = {}
        if host is not None:
            from mfm.runner.launch import SlotWishError, check_host_wish

            try:
                pin["want_host"] = check_host_wish(host, self.db)[0] or None
            except SlotWishError as e:
                field, _, rest = str(e).partition(": ")
                raise ControlError(rest, field=field) from None
        rec = self._request_resume(run_id, **pin)
        start_over = rec.epoch is None and not runfiles.has_checkpoint(rec.checkpoint_dir)
        note = self.serve_for(rec.want_slot, rec.want_host)
        return Resumed(run_id, 0 if rec.epoch is None else rec.epoch + 1, rec.epochs_total,
                       rec.attempt, start_over, note)

    def resume_sweep(self, ref: str) -> SweepResumed:
        """Queue every failed, cancelled or lost run of a sweep again; a run whose
        checkpoint is gone (and that recorded epochs) is left as it is, and said so."""
        rec = self.sweep(ref)
        elsewhere = self._served_elsewhere()
        queued: list[int] = []
        skipped: list[tuple[int, str, str]] = []
        for c in sweep_store.sweep_cells(self.db, rec.id):
            r = c.run
            if r is None or r.status not in RESUMABLE:
                continue
            try:
                self._check_checkpoint(r, elsewhere=elsewhere)
                self._request_resume(r.id)
            except ControlError as e:
                skipped.append((r.id, r.status, e.message))
                continue
            queued.append(r.id)
        note = self.serve_for(None, None) if queued else None
        return SweepResumed(rec.id, tuple(queued), tuple(skipped), note)
