"""What each run's job asks Slurm for: ``--time``, ``--slurm-arg`` and the other options of
``mfm worker --executor slurm``, checked, and the worker's slots."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mfm.runner.launch import SLURM_SLOT
from mfm.runner.slurm.commands import SlurmError
from mfm.runner.supervisor import Slot

__all__ = ["MAX_REQUEUES", "SIGNAL_DELAY_S", "SlurmOptions", "parse_slurm_args", "parse_time",
           "slurm_slots"]

#: the seconds before its time limit a job is told to stop (SIGUSR2) by default
SIGNAL_DELAY_S = 120
#: the times one run's job may be requeued after its time limit (submitit's max_num_timeout)
MAX_REQUEUES = 50

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
