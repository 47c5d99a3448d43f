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
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfm.runner.launch import SLURM_SLOT
from mfm.runner.supervisor import Slot, Supervisor
from mfm.store import Database, queue
from mfm.text import one_line

__all__ = ["SlurmError", "SlurmOptions", "JobInfo", "JobStates", "SlurmRun", "SlurmSupervisor",
           "parse_time", "parse_slurm_args", "missing_tools", "check_cluster", "parse_sacct",
           "parse_squeue", "parse_scontrol", "slurm_slots", "scancel", "stop_wait",
           "handle_first_signal_only", "ALIVE", "ENDED"]

#: job states in which the job still holds its run (waiting, running, requeued, held)
ALIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                   "RESIZING", "SUSPENDED", "COMPLETING", "CONFIGURING", "SIGNALING",
                   "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
#: job states Slurm ends a job in; the run becomes ``failed`` or ``lost`` if it did not
#: record its end itself (``lost``: the run itself did nothing wrong)
ENDED = {"COMPLETED": "failed", "FAILED": "failed", "OUT_OF_MEMORY": "failed",
         "TIMEOUT": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed",
         "NODE_FAIL": "lost", "CANCELLED": "lost", "PREEMPTED": "lost", "REVOKED": "lost"}

#: the seconds before its time limit a job is told to stop (SIGUSR2) by default
SIGNAL_DELAY_S = 120
#: the times one run's job may be requeued after its time limit (submitit's max_num_timeout)
MAX_REQUEUES = 50
#: the first pause of submissions after sbatch refused one (doubled up to SUBMIT_PAUSE_MAX)
SUBMIT_PAUSE = 15.0
SUBMIT_PAUSE_MAX = 300.0
#: how long a job must stay ended before its run is judged by it: a job that submitit
#: requeues shows FAILED or COMPLETED for a moment before it is PENDING again
ENDED_CONFIRM_S = 10.0

INSTALL_SUBMITIT = ("--executor slurm needs submitit: pip install 'mfm-workbench[slurm]' "
                    "(or pip install 'submitit>=1.5')")


class SlurmError(ValueError):
    """A Slurm option or command that cannot work; one line naming the option."""


# -- options --------------------------------------------------------------------------------

_TIME = re.compile(r"^(?:(?P<d>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
                   r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)$")


def parse_time(text: str) -> int:
    """Slurm's --time (``MIN``, ``MIN:SEC``, ``H:MIN:SEC``, ``D-H``, ``D-H:MIN``,
    ``D-H:MIN:SEC``) in whole minutes, rounded up; SlurmError otherwise."""
    m = _TIME.match(text.strip())
    if not m:
        raise SlurmError(f"--time: Slurm cannot read {text!r} (formats: MIN, MIN:SEC, "
                         f"H:MIN:SEC, D-H, D-H:MIN, D-H:MIN:SEC; e.g. 4:00:00)")
    g = {k: int(v) for k, v in m.groupdict().items() if v is not None}
    if "d" in g:
        secs = ((g["d"] * 24 + g["dh"]) * 60 + g.get("dm", 0)) * 60 + g.get("ds", 0)
    elif "c" in g:
        secs = (g["a"] * 60 + g["b"]) * 60 + g["c"]
    else:
        secs = g["a"] * 60 + g.get("b", 0)
    if secs <= 0:
        raise SlurmError(f"--time: must be longer than 0 (got {text!r})")
    return math.ceil(secs / 60)


def parse_slurm_args(items: Iterable[str]) -> dict[str, str]:
    """``--slurm-arg KEY=VALUE`` (sbatch's long option without its dashes: ``qos=high``,
    ``account=lab``, ``constraint=a100``) → {key: value}."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not eq or not re.match(r"^[a-z][a-z0-9_-]*$", key):
            raise SlurmError(f"--slurm-arg: expected KEY=VALUE with an sbatch option as KEY, "
                             f"like qos=high or account=lab (got {item!r})")
        out[key] = value.strip()
    return out


@dataclass(frozen=True)
class SlurmOptions:
    """What each run's job asks Slurm for."""

    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    mem: str | None = None
    time_min: int = 240
    max_jobs: int = 4
    extra: dict[str, str] = field(default_factory=dict)
    signal_delay_s: int = SIGNAL_DELAY_S
    max_requeues: int = MAX_REQUEUES

    def check(self) -> None:
        if self.max_jobs < 1:
            raise SlurmError(f"--max-jobs: must be >= 1 (got {self.max_jobs})")
        if self.gpus_per_run < 0:
            raise SlurmError(f"--gpus-per-run: must be >= 0 (got {self.gpus_per_run})")
        if self.cpus_per_run is not None and self.cpus_per_run < 1:
            raise SlurmError(f"--cpus-per-run: must be >= 1 (got {self.cpus_per_run})")
        if self.mem is not None and not re.match(r"^\d+[KMGT]?B?$", self.mem, re.I):
            raise SlurmError(f"--mem: expected a size like 16G or 4000M (got {self.mem!r})")
        if self.signal_delay_s < 1:
            raise SlurmError(f"--signal-delay: must be >= 1 s (got {self.signal_delay_s})")

    def executor_parameters(self) -> dict[str, Any]:
        """submitit.SlurmExecutor.update_parameters(**this)."""
        params: dict[str, Any] = {"time": self.time_min, "signal_delay_s": self.signal_delay_s,
                                  "nodes": 1, "ntasks_per_node": 1, "stderr_to_stdout": True,
                                  "job_name": "mfm"}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_run:
            params["gpus_per_node"] = self.gpus_per_run
        if self.cpus_per_run:
            params["cpus_per_task"] = self.cpus_per_run
        if self.mem:
            params["mem"] = self.mem
        if self.extra:
            params["additional_parameters"] = dict(self.extra)
        return params


def slurm_slots(max_jobs: int) -> list[Slot]:
    """slurm.0 .. slurm.N-1: a run that asks for the slot "slurm" fits any of them, and no
    local slot (claim_next matches a slot's name or the part before its dot)."""
    return [Slot(f"{SLURM_SLOT}.{i}", None) for i in range(max_jobs)]


# -- the cluster ------------------------------------------------------------------------------

def missing_tools() -> str | None:
    """One line saying what to install, or None when submitit and Slurm's commands are here."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return INSTALL_SUBMITIT
    lacking = [c for c in ("sbatch", "squeue", "scontrol", "scancel") if not shutil.which(c)]
    if lacking:
        return (f"--executor slurm: Slurm's {', '.join(lacking)} not found on PATH: run the "
                f"worker on a Slurm login node (apt-get install slurm-client, or your "
                f"cluster's module load slurm)")
    return None


def _run(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(one_line(f"{cmd[0]}: {e}")) from None


def _slurm_message(text: str) -> str:
    """Slurm's error lines as one line (``sbatch: error: `` prefixes dropped)."""
    lines = [re.sub(r"^(sbatch|srun|salloc): error: ", "", ln.strip())
             for ln in text.strip().splitlines() if ln.strip()]
    return one_line("; ".join(lines) or "no message")


def _gpus_in_gres(gres: str) -> int:
    """The most GPUs one node offers, from sinfo's %G (``gpu:a100:4(S:0-1),gpu:2``)."""
    most = 0
    for part in re.split(r",(?![^()]*\))", gres):
        fields = re.sub(r"\(.*\)", "", part).split(":")
        if fields[0] == "gpu":
            try:
                most = max(most, int(fields[-1]))
            except ValueError:
                most = max(most, 1)
    return most


def check_cluster(opts: SlurmOptions, folder: Path) -> None:
    """Before serving: the partition exists, it has nodes with the GPUs asked for, and
    ``sbatch --test-only`` takes a job with these options. SlurmError (one line) if not."""
    res = _run(["sinfo", "-h", "-o", "%P|%G"])
    if res.returncode != 0:
        raise SlurmError(f"Slurm does not answer: sinfo: {_slurm_message(res.stderr)}")
    gres: dict[str, int] = {}
    for line in res.stdout.splitlines():
        if "|" in line:
            name, g = line.split("|", 1)
            name = name.strip().rstrip("*")
            gres[name] = max(gres.get(name, 0), _gpus_in_gres(g.strip()))
    if opts.partition is not None and opts.partition not in gres:
        raise SlurmError(f"--partition: no partition {opts.partition!r} on this cluster "
                         f"(partitions: {', '.join(sorted(gres)) or 'none'})")
    if opts.gpus_per_run:
        parts = [opts.partition] if opts.partition else sorted(gres)
        most = max((gres[p] for p in parts), default=0)
        if opts.gpus_per_run > most:
            where = f"partition {opts.partition}" if opts.partition else "any partition"
            raise SlurmError(f"--gpus-per-run: {opts.gpus_per_run} GPU(s) per run, but no node "
                             f"of {where} has more than {most}")
    from submitit.slurm.slurm import _make_sbatch_string

    folder.mkdir(parents=True, exist_ok=True)
    try:
        script = _make_sbatch_string(command="true", folder=str(folder),
                                     **opts.executor_parameters())
    except (ValueError, TypeError) as e:
        raise SlurmError(one_line(f"--slurm-arg: {e}")) from None
    with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=folder, delete=False) as f:
        f.write(script)
    try:
        res = _run(["sbatch", "--test-only", f.name])
    finally:
        os.unlink(f.name)
    if res.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {_slurm_message(res.stderr)}")


def scancel(job_id: str, *, signal_name: str | None = None) -> str | None:
    """``scancel [--signal=SIG] JOB``; None when done, else Slurm's message in one line."""
    cmd = ["scancel", *([f"--signal={signal_name}"] if signal_name else []), job_id]
    try:
        res = _run(cmd)
    except SlurmError as e:
        return str(e)
    return None if res.returncode == 0 else _slurm_message(res.stderr)


# -- job states -------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobInfo:
    state: str            # PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, ...
    reason: str = ""      # Priority, Resources, BeginTime, NonZeroExitCode, ... ("" if None)
    exit_code: str = ""   # "0:0" (code:signal), when Slurm says

    @property
    def text(self) -> str:
        """``PENDING (Priority)``, ``FAILED (NonZeroExitCode, exit 1:0)``."""
        extra = [self.reason] if self.reason else []
        if self.exit_code and self.exit_code != "0:0":
            extra.append(f"exit {self.exit_code}")
        return self.state + (f" ({', '.join(extra)})" if extra else "")


def _reason(text: str) -> str:
    text = text.strip()
    return "" if text in ("None", "(null)", "") else text


def _state(text: str) -> tuple[str, str]:
    """``CANCELLED by 0`` → ("CANCELLED", "by 0"); ``RUNNING`` → ("RUNNING", "")."""
    word, _, rest = text.strip().partition(" ")
    return word.rstrip("+"), rest.strip()


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """``sacct -X -n -P -o JobIDRaw,State,Reason,ExitCode -j ...`` → {job id: JobInfo}
    (job steps, ``123.batch``, are skipped)."""
    out: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 4 or not parts[0] or "." in parts[0]:
            continue
        state, by = _state(parts[1])
        reason = _reason(parts[2]) or by
        out[parts[0]] = JobInfo(state, reason, parts[3].strip())
    return out


def parse_squeue(text: str) -> dict[str, JobInfo]:
    """``squeue -h -t all -o '%i|%T|%r'`` → {job id: JobInfo}."""
    out: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 3 and parts[0]:
            out[parts[0]] = JobInfo(_state(parts[1])[0], _reason(parts[2]))
    return out


def parse_scontrol(text: str) -> JobInfo | None:
    """``scontrol show job -o ID`` → JobInfo, or None if Slurm does not know the job."""
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    if "JobState" not in fields:
        return None
    return JobInfo(_state(fields["JobState"])[0], _reason(fields.get("Reason", "")),
                   fields.get("ExitCode", ""))


class JobStates:
    """Reads job states: sacct where Slurm keeps accounting, else squeue and
    ``scontrol show job`` (finished jobs stay visible there for MinJobAge)."""

    def __init__(self, accounting: bool | None = None,
                 run: Callable[[list[str]], subprocess.CompletedProcess[str]] = _run):
        self.accounting, self._run = accounting, run

    def read(self, job_ids: Iterable[str]) -> dict[str, JobInfo]:
        """{job id: JobInfo} for the jobs Slurm knows; a job it does not know is absent.
        SlurmError when Slurm does not answer at all."""
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        if self.accounting is not False:
            res = self._run(["sacct", "-X", "-n", "-P", "-o", "JobIDRaw,State,Reason,ExitCode",
                             "-j", ",".join(ids)])
            if res.returncode == 0:
                self.accounting = True
                found = parse_sacct(res.stdout)
                missing = [i for i in ids if i not in found]
                # a job submitted a moment ago may not be in the database yet
                return {**found, **self._from_controller(missing)} if missing else found
            if self.accounting is None or "accounting storage is disabled" in res.stderr:
                self.accounting = False  # no slurmdbd: ask the controller
            else:
                raise SlurmError(f"sacct: {_slurm_message(res.stderr)}")
        return self._from_controller(ids)

    def _from_controller(self, ids: list[str]) -> dict[str, JobInfo]:
        if not ids:
            return {}
        res = self._run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"])
        found = parse_squeue(res.stdout) if res.returncode == 0 else {}
        if res.returncode != 0 and "Invalid job id" not in res.stderr:
            raise SlurmError(f"squeue: {_slurm_message(res.stderr)}")
        out: dict[str, JobInfo] = {}
        for job_id in ids:
            info = found.get(job_id)
            if info is None or info.state not in ALIVE:  # exit code and reason of the end
                res = self._run(["scontrol", "show", "job", "-o", job_id])
                info = (parse_scontrol(res.stdout) if res.returncode == 0 else None) or info
            if info is not None:
                out[job_id] = info
        return out


# -- inside the job -----------------------------------------------------------------------------

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
    for its job to restart) and hands submitit the same call to requeue."""

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
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_DEVICE_ORDER="PCI_BUS_ID")
        cmd = [self.python, "-m", self.child_module, "--checkpoint-dir", str(run_dir),
               "--slurm-job", job_id, str(self.run_id)]
        with open(run_dir / "run.log", "ab") as log:
            log.write(f"== run {self.run_id} in Slurm job {job_id} on {os.uname().nodename} at "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')} ==\n".encode())
            log.flush()
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, env=env, close_fds=True)
        # poll rather than wait(): submitit's signal handler may wait for the process too
        while self._proc.poll() is None:
            time.sleep(0.5)
        return self._proc.returncode

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


# -- the worker ---------------------------------------------------------------------------------

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
               run_dir: Path | None = None) -> None:
        run_dir = run_dir or self.runs_root / str(run_id)
        try:
            job_id = self._submit(run_id, run_dir)
        except Exception as e:  # noqa: BLE001 — sbatch refused, Slurm down: keep it queued
            reason = _slurm_message(str(e)) if str(e).strip() else type(e).__name__
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
        try:
            infos = self.states.read(r.job_id for r in runs if r.job_id)
        except SlurmError as e:  # Slurm's controller restarts: judge nothing meanwhile
            if self.slurm_failing != str(e):
                self.log(f"Slurm does not answer ({e}); retrying")
            self.slurm_failing = str(e)
            return
        if self.slurm_failing is not None:
            self.log("Slurm answers again")
            self.slurm_failing = None
        now = self.clock()
        for rec in runs:
            assert rec.job_id is not None
            info = infos.get(rec.job_id)
            if info is None:  # purged (MinJobAge) or never known: judged by the heartbeat
                beat = rec.heartbeat_at or rec.started_at or rec.created_at
                if now - beat > self.heartbeat_timeout:
                    note = (f"lost: Slurm no longer knows job {rec.job_id} and the run's last "
                            f"heartbeat was {now - beat:.0f} s ago; resume with: mfm resume "
                            f"{rec.id}")
                    if queue.end_job_run(self.db, rec.id, "lost", note, "UNKNOWN"):
                        self.log(f"run {rec.id}: {note}")
                continue
            if info.state in ALIVE:
                self.ended_since.pop(rec.id, None)
                if self.reported.get(rec.id) != info.text or rec.job_state != info.text:
                    queue.set_job_state(self.db, rec.id, info.text)
                    self.reported[rec.id] = info.text
                if rec.id not in self.busy.values():
                    self._occupy(rec.slot, rec.id)
                continue
            seen = self.ended_since.setdefault(rec.id, (info.state, now))
            if seen[0] != info.state:
                self.ended_since[rec.id] = (info.state, now)
            elif now - seen[1] >= ENDED_CONFIRM_S:
                self._ended(rec, info)
                self.ended_since.pop(rec.id, None)
        active = {r.id for r in runs}
        for run_id in list(self.busy.values()):
            if run_id not in active and self._status(run_id) not in queue.ACTIVE:
                self._release(run_id)
                self.signalled.discard(run_id)
                self.reported.pop(run_id, None)

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
