"""The Slurm executor (``mfm worker --executor slurm``): claimed runs become Slurm jobs
through submitit; Slurm's state reconciles what a run could not say itself.

- A claimed run is submitted as one job (sbatch through submitit, job files in
  ``RUNS/slurm``); the job id is recorded with the run (``runs.job_id``).
- The job runs :class:`SlurmRun`, which starts the same run process as a local supervisor
  does (``python -m mfm.runner.child``, ``MFM_DB`` in its environment): the run writes its
  own records and heartbeats.
- Preemption and time limits: Slurm sends SIGUSR2 ``--signal`` seconds before the end (and
  SIGTERM at a requeue). The run stops after its current step, keeps its last epoch's
  checkpoint and is recorded as waiting for its job to restart (status ``starting``, not
  cancelled); submitit requeues the job (``scontrol requeue``) and the run resumes from its
  last epoch when the job starts again.
- The worker asks Slurm about the jobs of active runs: sacct where accounting works, else
  squeue / ``scontrol show job`` (finished jobs stay visible for MinJobAge). A PENDING job's
  reason shows in ``mfm runs``; a job Slurm ended without the run recording its end makes
  the run failed or lost with Slurm's state and reason; a cancel is ``scancel``.

Import cost: nothing here imports submitit or torch until a job is submitted or run.

Modules: ``commands`` (SlurmError, running Slurm's commands), ``options`` (what a job asks
for, the slots), ``cluster`` (missing tools, the pre-serve check, scancel), ``states`` (job
states from sacct / squeue / scontrol), ``job`` (SlurmRun and its signals, inside the job) and
``supervisor`` (submission and reconciliation). Every name is re-exported here.
"""

from __future__ import annotations

from mfm.runner.slurm.cluster import INSTALL_SUBMITIT, check_cluster, missing_tools, scancel
from mfm.runner.slurm.commands import SlurmError
from mfm.runner.slurm.job import STOP_WAIT_S, SlurmRun, handle_first_signal_only, stop_wait
from mfm.runner.slurm.options import (
    MAX_REQUEUES,
    SIGNAL_DELAY_S,
    SlurmOptions,
    parse_slurm_args,
    parse_time,
    slurm_slots,
)
from mfm.runner.slurm.states import (
    ALIVE,
    ENDED,
    JobInfo,
    JobStates,
    parse_sacct,
    parse_scontrol,
    parse_squeue,
)
from mfm.runner.slurm.supervisor import (
    ENDED_CONFIRM_S,
    SUBMIT_PAUSE,
    SUBMIT_PAUSE_MAX,
    SlurmSupervisor,
)

__all__ = ["SlurmError", "SlurmOptions", "JobInfo", "JobStates", "SlurmRun", "SlurmSupervisor",
           "parse_time", "parse_slurm_args", "missing_tools", "check_cluster", "parse_sacct",
           "parse_squeue", "parse_scontrol", "slurm_slots", "scancel", "stop_wait",
           "handle_first_signal_only", "ALIVE", "ENDED", "ENDED_CONFIRM_S", "INSTALL_SUBMITIT",
           "MAX_REQUEUES", "SIGNAL_DELAY_S", "STOP_WAIT_S", "SUBMIT_PAUSE", "SUBMIT_PAUSE_MAX"]
