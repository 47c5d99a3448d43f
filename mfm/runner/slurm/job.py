"""Inside the job: :class:`SlurmRun` (what submitit pickles and a Slurm job runs) starts the
run process, and on SIGUSR2 (preemption, time limit) stops it and hands submitit the same call
to requeue. submitit is imported only at a checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mfm.store import Database, queue

__all__ = ["STOP_WAIT_S", "SlurmRun", "handle_first_signal_only", "stop_wait"]

#: how long the job waits for its run to stop after SIGUSR2 before it requeues anyway (at
#: most; the supervisor asks for less when the signal comes less than a minute before the end)
STOP_WAIT_S = 60.0


def stop_wait(signal_delay_s: int) -> float:
    """How long the job may wait for its run to stop: the job must requeue itself before its
    time limit, ``signal_delay_s`` after SIGUSR2, so a few seconds are kept for that."""
    return max(1.0, min(STOP_WAIT_S, signal_delay_s - 10.0))


def handle_first_signal_only(signum: int) -> None:
    """Keep the installed handler of ``signum`` (submitit's checkpoint-and-requeue) for the
    first delivery and ignore the rest. Slurm delivers ``--signal`` twice to a job's task: to
    the task itself and through srun, which forwards what it got; a second checkpoint and
    ``scontrol requeue`` of a job that is already requeued fails, and the job ends FAILED
    instead of coming back."""
    handler = signal.getsignal(signum)
    if not callable(handler):
        return
    seen = False

    def once(sig: int, frame: Any) -> None:
        nonlocal seen
        if seen:
            return
        seen = True
        handler(sig, frame)

    signal.signal(signum, once)


class SlurmRun:
    """What a Slurm job runs (pickled by submitit): the run process of ``run_id``, as a local
    supervisor starts it. Checkpointable in submitit's sense: on SIGUSR2 (preemption, time
    limit) :meth:`checkpoint` stops the run after its current step (it records that it waits
    for its job to restart) and hands submitit the same call to requeue.

    Pickled as ``mfm.runner.slurm.job.SlurmRun``; ``mfm.runner.slurm.SlurmRun`` (the name
    before the package was split, in the pickles of jobs submitted then) is the same class."""

    def __init__(self, run_id: int, checkpoint_dir: str, python: str = sys.executable,
                 child_module: str = "mfm.runner.child", stop_wait_s: float = STOP_WAIT_S):
        self.run_id, self.checkpoint_dir, self.python = run_id, checkpoint_dir, python
        self.child_module, self.stop_wait_s = child_module, stop_wait_s
        self._proc: subprocess.Popen[bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_proc"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._proc = None

    def __call__(self) -> int:
        job_id = os.environ.get("SLURM_JOB_ID", "")
        target = os.environ.get("MFM_DB")
        if not target:
            raise RuntimeError("no database: MFM_DB is not in the job's environment")
        with Database(target) as db:
            what = queue.job_restarted(db, self.run_id, job_id)
        if what != "start":
            print(f"run {self.run_id}: nothing to do in job {job_id} ({what})", flush=True)
            return 0
        run_dir = Path(self.checkpoint_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        handle_first_signal_only(signal.SIGUSR2)
        proc = self._start(run_dir, job_id)
        # poll rather than wait(): submitit's signal handler may wait for the process too
        while proc.poll() is None:
            time.sleep(0.5)
        return proc.returncode

    def _start(self, run_dir: Path, job_id: str) -> subprocess.Popen[bytes]:
        """Start the run process (``python -m mfm.runner.child``, its output appended to
        run.log) and keep it in ``_proc`` at once, for :meth:`checkpoint`."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_DEVICE_ORDER="PCI_BUS_ID")
        cmd = [self.python, "-m", self.child_module, "--checkpoint-dir", str(run_dir),
               "--slurm-job", job_id, str(self.run_id)]
        with open(run_dir / "run.log", "ab") as log:
            log.write(f"== run {self.run_id} in Slurm job {job_id} on {os.uname().nodename} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} ==\n".encode())
            log.flush()
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=env, close_fds=True)
        return self._proc

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Called by submitit on SIGUSR2: stop the run after its current step and wait (at
        most ``stop_wait_s``) for it to record that; then requeue the same call."""
        import submitit

        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + self.stop_wait_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        fresh = SlurmRun(self.run_id, self.checkpoint_dir, self.python, self.child_module,
                         self.stop_wait_s)
        return submitit.helpers.DelayedSubmission(fresh)
