"""Slurm's view of the jobs: the job states that hold a run or end it, and :class:`JobStates`,
which reads them from sacct where Slurm keeps accounting, else from squeue and
``scontrol show job`` (finished jobs stay visible there for MinJobAge)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mfm.runner.slurm.commands import SlurmError, run_command, slurm_message

__all__ = ["ALIVE", "ENDED", "JobInfo", "JobStates", "parse_sacct", "parse_scontrol",
           "parse_squeue"]

#: job states in which the job still holds its run (waiting, running, requeued, held)
ALIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                   "RESIZING", "SUSPENDED", "COMPLETING", "CONFIGURING", "SIGNALING",
                   "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
#: job states Slurm ends a job in; the run becomes ``failed`` or ``lost`` if it did not
#: record its end itself (``lost``: the run itself did nothing wrong)
ENDED = {"COMPLETED": "failed", "FAILED": "failed", "OUT_OF_MEMORY": "failed",
         "TIMEOUT": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed",
         "NODE_FAIL": "lost", "CANCELLED": "lost", "PREEMPTED": "lost", "REVOKED": "lost"}


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
                 run: Callable[[list[str]], subprocess.CompletedProcess[str]] = run_command):
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
                raise SlurmError(f"sacct: {slurm_message(res.stderr)}")
        return self._from_controller(ids)

    def _from_controller(self, ids: list[str]) -> dict[str, JobInfo]:
        if not ids:
            return {}
        res = self._run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"])
        found = parse_squeue(res.stdout) if res.returncode == 0 else {}
        if res.returncode != 0 and "Invalid job id" not in res.stderr:
            raise SlurmError(f"squeue: {slurm_message(res.stderr)}")
        out: dict[str, JobInfo] = {}
        for job_id in ids:
            info = found.get(job_id)
            if info is None or info.state not in ALIVE:  # exit code and reason of the end
                res = self._run(["scontrol", "show", "job", "-o", job_id])
                info = (parse_scontrol(res.stdout) if res.returncode == 0 else None) or info
            if info is not None:
                out[job_id] = info
        return out
