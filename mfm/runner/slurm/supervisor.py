"""The worker (``mfm worker --executor slurm``): :class:`SlurmSupervisor` submits claimed runs
as Slurm jobs and reconciles the records with Slurm's view of them. submitit is imported at
the first submission."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mfm.runner.launch import SLURM_SLOT
from mfm.runner.slurm.cluster import scancel
from mfm.runner.slurm.commands import SlurmError, slurm_message
from mfm.runner.slurm.job import SlurmRun, stop_wait
from mfm.runner.slurm.options import SlurmOptions, slurm_slots
from mfm.runner.slurm.states import ALIVE, ENDED, JobInfo, JobStates
from mfm.runner.supervisor import Slot, Supervisor
from mfm.store import Database, RunRecord, queue

__all__ = ["ENDED_CONFIRM_S", "SUBMIT_PAUSE", "SUBMIT_PAUSE_MAX", "SlurmSupervisor"]

#: the first pause of submissions after sbatch refused one (doubled up to SUBMIT_PAUSE_MAX)
SUBMIT_PAUSE = 15.0
SUBMIT_PAUSE_MAX = 300.0
#: how long a job must stay ended before its run is judged by it: a job that submitit
#: requeues shows FAILED or COMPLETED for a moment before it is PENDING again
ENDED_CONFIRM_S = 10.0


class SlurmSupervisor(Supervisor):
    """``mfm worker --executor slurm``: claims queued runs for its slots (slurm.0 ..), submits
    each as a Slurm job, and reconciles the records with Slurm's view of the jobs. Light
    enough for a login node: it trains nothing, it only asks Slurm."""

    def __init__(self, db: Database, *, options: SlurmOptions, states: JobStates | None = None,
                 submit: Callable[[int, Path], str] | None = None, **kwargs: Any):
        kwargs.setdefault("slots", slurm_slots(options.max_jobs))
        super().__init__(db, **kwargs)
        self.options = options
        self.states = states or JobStates()
        self.folder = self.runs_root / "slurm"
        self._submit = submit or self._submit_with_submitit
        self._executor: Any = None
        self.paused_until = 0.0
        self.pause = SUBMIT_PAUSE
        self.reported: dict[int, str] = {}  # run id -> the job state last recorded
        self.slurm_failing: str | None = None
        self.ended_since: dict[int, tuple[str, float]] = {}  # run id -> (job state, first seen)

    # -- submitting ---------------------------------------------------------------------------
    def _submit_with_submitit(self, run_id: int, run_dir: Path) -> str:
        if self._executor is None:
            import submitit

            ex = submitit.SlurmExecutor(folder=str(self.folder),
                                        max_num_timeout=self.options.max_requeues,
                                        python=self.python)
            ex.update_parameters(**self.options.executor_parameters())
            self._executor = ex
        self._executor.update_parameters(job_name=f"mfm-{run_id}")
        # the job's environment is this one (sbatch --export=ALL): the database travels
        # there, never on a command line
        os.environ["MFM_DB"] = self.db_target
        job = self._executor.submit(SlurmRun(run_id, str(run_dir), self.python,
                                             self.child_module,
                                             stop_wait(self.options.signal_delay_s)))
        return str(job.job_id)

    def launch_free(self) -> None:
        if self.clock() < self.paused_until:
            return
        super().launch_free()

    def launch(self, run_id: int, slot: Slot, *, attempt: int, resume: bool,
               run_dir: Path | None = None, config: dict[str, Any] | None = None) -> None:
        # ``config`` is not needed here: a Slurm job has its own CPUs (--cpus-per-run), and its
        # run process plans its threads for itself (mfm.engine.threads, one run)
        run_dir = run_dir or self.runs_root / str(run_id)
        try:
            job_id = self._submit(run_id, run_dir)
        except Exception as e:  # noqa: BLE001 — sbatch refused, Slurm down: keep it queued
            reason = slurm_message(str(e)) if str(e).strip() else type(e).__name__
            queue.submit_failed(self.db, run_id, reason)
            self.paused_until = self.clock() + self.pause
            self.log(f"run {run_id}: submission failed, still queued; next try in "
                     f"{self.pause:g} s: {reason}")
            self.pause = min(self.pause * 2, SUBMIT_PAUSE_MAX)
            return
        self.pause = SUBMIT_PAUSE
        queue.set_job(self.db, run_id, job_id=job_id, log_path=str(run_dir / "run.log"))
        self.busy[slot.name] = run_id
        self.reported[run_id] = "PENDING"
        self.log(f"run {run_id}: submitted as Slurm job {job_id} (slot {slot.name}"
                 f"{', resume' if resume else ''}, attempt {attempt})")

    # -- the records against Slurm --------------------------------------------------------------
    def reconcile(self) -> None:
        """On start: count the live jobs of the records on the slots, and queue again the
        runs this host claimed but never submitted."""
        for rec in queue.job_runs(self.db):
            if rec.slot and rec.slot.split(".")[0] == SLURM_SLOT:
                self._occupy(rec.slot, rec.id)
                self.log(f"run {rec.id}: re-adopted Slurm job {rec.job_id}")
        for rec in queue.active_runs(self.db, host=self.host):
            if rec.job_id is None and rec.status == "starting" and rec.slot and \
                    rec.slot.split(".")[0] == SLURM_SLOT:
                if queue.transition(self.db, rec.id, "queued", allowed_from=("starting",)):
                    self.log(f"run {rec.id}: claimed but never submitted; queued again")

    def reap(self) -> None:
        pass  # jobs are not our children

    def watch(self) -> None:
        runs = queue.job_runs(self.db)
        infos = self._read_states(runs)
        if infos is None:
            return
        now = self.clock()
        for rec in runs:
            assert rec.job_id is not None
            info = infos.get(rec.job_id)
            if info is None:  # purged (MinJobAge) or never known: judged by the heartbeat
                self._unknown_job(rec, now)
            elif info.state in ALIVE:
                self._alive_job(rec, info)
            else:
                self._ended_job(rec, info, now)
        active = {r.id for r in runs}
        for run_id in list(self.busy.values()):
            if run_id not in active and self._status(run_id) not in queue.ACTIVE:
                self._release(run_id)
                self.signalled.discard(run_id)
                self.reported.pop(run_id, None)

    def _read_states(self, runs: list[RunRecord]) -> dict[str, JobInfo] | None:
        """Slurm's word on the jobs of ``runs``, or None while it does not answer (its
        controller restarts: judge nothing meanwhile)."""
        try:
            infos = self.states.read(r.job_id for r in runs if r.job_id)
        except SlurmError as e:
            if self.slurm_failing != str(e):
                self.log(f"Slurm does not answer ({e}); retrying")
            self.slurm_failing = str(e)
            return None
        if self.slurm_failing is not None:
            self.log("Slurm answers again")
            self.slurm_failing = None
        return infos

    def _unknown_job(self, rec: RunRecord, now: float) -> None:
        """A job Slurm no longer knows: the run is lost once its heartbeat is too old."""
        beat = rec.heartbeat_at or rec.started_at or rec.created_at
        if now - beat > self.heartbeat_timeout:
            note = (f"lost: Slurm no longer knows job {rec.job_id} and the run's last "
                    f"heartbeat was {now - beat:.0f} s ago; resume with: mfm resume "
                    f"{rec.id}")
            if queue.end_job_run(self.db, rec.id, "lost", note, "UNKNOWN"):
                self.log(f"run {rec.id}: {note}")

    def _alive_job(self, rec: RunRecord, info: JobInfo) -> None:
        """A job that holds its run: its state (PENDING and why) is recorded, its slot held."""
        self.ended_since.pop(rec.id, None)
        if self.reported.get(rec.id) != info.text or rec.job_state != info.text:
            queue.set_job_state(self.db, rec.id, info.text)
            self.reported[rec.id] = info.text
        if rec.id not in self.busy.values():
            self._occupy(rec.slot, rec.id)

    def _ended_job(self, rec: RunRecord, info: JobInfo, now: float) -> None:
        """A job in an end state: believed once it has stayed there ENDED_CONFIRM_S (a job
        that submitit requeues shows FAILED or COMPLETED for a moment)."""
        seen = self.ended_since.setdefault(rec.id, (info.state, now))
        if seen[0] != info.state:
            self.ended_since[rec.id] = (info.state, now)
        elif now - seen[1] >= ENDED_CONFIRM_S:
            self._ended(rec, info)
            self.ended_since.pop(rec.id, None)

    def _ended(self, rec: Any, info: JobInfo) -> None:
        """Slurm ended the job and the run did not record its end: Slurm's word decides."""
        # the run may have recorded its end between our read and Slurm's answer
        fresh = self._status(rec.id)
        if fresh not in queue.ACTIVE:
            return
        if rec.cancel_requested_at is not None:
            to, head = "cancelled", "cancelled"
        else:
            to = ENDED.get(info.state, "lost")
            head = to
        waited = (" after it stopped for a restart that did not come"
                  if rec.status == "starting" and rec.error
                  and rec.error.startswith(queue.RESTART_NOTE) else "")
        note = (f"{head}: Slurm job {rec.job_id} ended {info.text} without the run recording "
                f"its end{waited}; resume with: mfm resume {rec.id}")
        if to == "cancelled":
            note = f"cancelled: Slurm job {rec.job_id} ended {info.text}"
        if queue.end_job_run(self.db, rec.id, to, note, info.text):
            self.log(f"run {rec.id}: {note}")
        self._release(rec.id)

    def handle_cancels(self) -> None:
        """``mfm cancel`` of a run in a job: scancel (pending or running). A job that never
        started its run is recorded cancelled at once; a running run records its own
        cancel after its current step (Slurm's SIGTERM), else :meth:`watch` does."""
        for rec in queue.job_runs(self.db):
            if rec.cancel_requested_at is None or rec.id in self.signalled:
                continue
            assert rec.job_id is not None
            why = scancel(rec.job_id)
            self.signalled.add(rec.id)
            if why is not None:
                self.log(f"run {rec.id}: scancel {rec.job_id}: {why}")
            else:
                self.log(f"run {rec.id}: Slurm job {rec.job_id} cancelled (scancel)")
            if rec.status == "starting":
                queue.transition(self.db, rec.id, "cancelled", allowed_from=("starting",),
                                 error=f"cancelled: Slurm job {rec.job_id} cancelled before "
                                       f"the run started")

    def watch_elsewhere(self) -> None:
        super().watch_elsewhere()  # local runs of hosts nobody reports for
