"""The engine's side of the thread policy (the plan itself: ``mfm.threads``): set torch's
thread counts in the run process and say what was used, for the records."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mfm.threads import (
    available_cores,
    plan_from_env,
    plan_threads,
    read_cpu_jiffies,
    threads_for_load,
)

__all__ = ["LoadFollower", "apply_threads", "follows_load"]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class LoadFollower:
    """``train.threads=auto`` while the run trains: every ``every`` seconds, the cores of this
    process's CPU set that other processes kept busy since the last look (their busy time in
    ``/proc/stat`` minus this process's own CPU time) decide the thread count for the next
    stretch: the cores they leave free, rounded, at most the plan, at least 1. Two passive
    threads on two cores with one busy process beside them wait on the slower one at every
    parallel region; one thread then runs at one core's full speed.

    ``step()`` is called after every training step; it costs a clock read except once per
    ``every`` seconds (one read of /proc/stat). ``used`` lists the counts it set."""

    def __init__(self, planned: int, *, every: float = 2.0, stat: Path = Path("/proc/stat"),
                 cpus: set[int] | None = None, clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time,
                 set_threads: Callable[[int], None] = torch.set_num_threads):
        self.planned, self.every, self.stat = planned, every, stat
        if cpus is None:
            try:
                cpus = set(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = None
        self.cpus = cpus
        self.cores = len(cpus) if cpus else (os.cpu_count() or 1)
        self.clock, self.cpu_clock, self.set_threads = clock, cpu_clock, set_threads
        self.current = planned
        self.used = [planned]
        self._last = self._sample()

    def _sample(self) -> tuple[float, float, int] | None:
        try:
            busy = read_cpu_jiffies(self.stat.read_text(), self.cpus)
        except (OSError, ValueError):
            return None
        return self.clock(), self.cpu_clock(), busy

    def step(self) -> None:
        if self._last is None or self.clock() - self._last[0] < self.every:
            return
        now = self._sample()
        if now is None:
            self._last = None  # /proc/stat went away: keep the plan
            return
        wall = now[0] - self._last[0]
        own = now[1] - self._last[1]
        others = max(0.0, (now[2] - self._last[2]) / _TICKS - own) / wall
        self._last = now
        want = threads_for_load(self.planned, self.cores, others)
        if want != self.current:
            self.set_threads(want)
            self.current = want
            if want not in self.used:
                self.used.append(want)


def follows_load(used: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> bool:
    """Does a run that applied ``used`` follow the load? Only with ``train.threads=follow``
    (``auto`` keeps one count: bit-reproducible), and not when the user pinned
    OMP_NUM_THREADS, not with one thread, not without /proc/stat."""
    env = os.environ if environ is None else environ
    pinned = "OMP_NUM_THREADS" in env and "MFM_THREADS" not in env
    return (used["setting"] == "follow" and not pinned and int(used["threads"]) > 1
            and Path("/proc/stat").exists())


def apply_threads(setting: int | str, *, environ: Mapping[str, str] | None = None
                  ) -> dict[str, Any]:
    """In the run process, once torch may load: use the launcher's plan (in the environment)
    or else plan ``setting`` for one run, set torch's thread counts, and return what is used
    (for the records): {threads, interop, policy, cores, runs, setting, planned_by}.

    The waiting policy is whatever OpenMP read when torch loaded (``OMP_WAIT_POLICY`` then);
    a plan made after torch loaded cannot change it and says ``policy: "default"`` unless the
    environment held one."""
    env = os.environ if environ is None else environ
    plan = plan_from_env(env)
    planned_by = "launcher"
    if plan is None or plan.setting != str(setting):
        # no launcher plan, or one for another setting (a config changed on resume): plan here
        plan = plan_threads(setting, cores=available_cores(), runs=1, environ=env)
        planned_by = "engine"
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    if torch.get_num_interop_threads() != plan.interop:
        try:
            torch.set_num_interop_threads(plan.interop)
        except RuntimeError:  # only possible before the first inter-op work; keep torch's
            pass
    policy = env.get("OMP_WAIT_POLICY", "").strip().lower() or "default"
    return {"threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "policy": policy, "cores": plan.cores, "runs": plan.runs, "setting": plan.setting,
            "planned_by": planned_by}
