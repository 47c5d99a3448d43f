"""The thread plan of a run process (``train.threads = auto | N``). Torch-free: launchers plan
before torch loads, and the TUI's supervisor may import it (the engine applies it:
``mfm.engine.threads``; the supervisor passes it on: ``mfm.runner.threads``).

OpenMP's threads busy-wait ("spin") between parallel regions by default. On a machine whose
cores are shared (another job, a data loader, a second run of ours) the spinning threads steal
the cores the working ones need, and a run slows three to five times (docs/BENCHMARKS.md,
"Threads under load"). The plan is therefore:

* ``auto``: the cores this process may use (its CPU affinity, capped by a cgroup CPU quota)
  divided among the runs its supervisor runs at once on this host (its slots), at least 1;
* ``N``: exactly N;
* an ``OMP_NUM_THREADS`` the user set (not one of our plans) is respected by ``auto``;
* ``follow``: ``auto``, and then the run follows the load while it trains: every few seconds
  the engine reads how many of its cores other processes kept busy (``/proc/stat`` minus its
  own CPU time) and uses the cores they leave, at most the plan, at least one
  (``mfm.engine.threads.LoadFollower``). Not the default: CPU float sums depend on the thread
  count, so such a run is not bit-reproducible (a resume or a rerun may differ in the last
  digits); ``auto`` and ``N`` keep one count for the whole run;
* in both cases OpenMP waits passively (``OMP_WAIT_POLICY=PASSIVE``): idle threads sleep
  instead of spinning, unless the user's environment already says ``OMP_WAIT_POLICY``.

libgomp and MKL read these variables once, when torch's libraries load: the plan must be in the
environment BEFORE the run process imports torch. The supervisor puts it in the child's
environment (``mfm.runner.threads``); a headless run calls :func:`apply_before_torch` first
thing. ``fit`` then calls ``mfm.engine.threads.apply_threads`` (``torch.set_num_threads``
with the planned count) and records what was used in the run's start info and summary.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["PLAN_VARS", "ThreadPlan", "apply_before_torch", "available_cores",
           "cgroup_cpu_limit", "plan_from_env", "plan_threads", "read_cpu_jiffies",
           "read_cpu_max", "threads_for_load"]

#: the variables a plan sets (and the engine reads back)
PLAN_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "MFM_THREADS",
             "MFM_INTEROP_THREADS", "MFM_THREADS_FROM")


@dataclass(frozen=True)
class ThreadPlan:
    threads: int  # intra-op threads (OpenMP / MKL / torch.set_num_threads)
    interop: int  # inter-op threads (torch.set_num_interop_threads)
    policy: str  # OpenMP's waiting policy: "passive" (threads sleep) or "active" (they spin)
    cores: int  # the cores this process may use
    runs: int  # the runs sharing them
    setting: str  # the train.threads it came from: "auto" or the number

    def env(self) -> dict[str, str]:
        """The environment a run process needs before torch loads."""
        return {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads),
                "OMP_WAIT_POLICY": self.policy.upper(), "MFM_THREADS": str(self.threads),
                "MFM_INTEROP_THREADS": str(self.interop), "MFM_THREADS_FROM": self.setting}

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def read_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"200000 100000"`` or ``"max 100000"``) -> cores, or None."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpu_limit(*, root: Path = Path("/sys/fs/cgroup"),
                     self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup and its ancestors, in cores (the tightest), or
    None without one. cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us``)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and controllers == "":  # v2: the unified hierarchy
            base, name = root, "cpu.max"
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's hierarchy
            found = next((root / c for c in (controllers, "cpu,cpuacct", "cpu")
                          if (root / c).is_dir()), None)
            if found is None:
                continue
            base = found
            name = "cpu.cfs_quota_us"
        else:
            continue
        d = base / path.lstrip("/")
        while True:
            limit = _read_limit(d, name)
            if limit is not None:
                limits.append(limit)
            if d == base or d.parent == d:
                break
            d = d.parent
    return min(limits) if limits else None


def _read_limit(d: Path, name: str) -> float | None:
    try:
        if name == "cpu.max":
            return read_cpu_max((d / name).read_text())
        quota = int((d / name).read_text())
        period = int((d / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cores(*, affinity: int | None = None, quota: float | None = None,
                    probe: bool = True) -> int:
    """The cores this process may use: its affinity (``sched_getaffinity``), capped by the
    cgroup quota rounded down, at least 1. ``affinity`` / ``quota`` override what is read
    (tests); ``probe=False`` reads nothing that is not given."""
    if affinity is None and probe:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # not on Linux
            affinity = os.cpu_count()
    if quota is None and probe:
        quota = cgroup_cpu_limit()
    cores = affinity or 1
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota + 1e-9)))
    return max(1, cores)


def plan_threads(setting: int | str, *, cores: int, runs: int = 1,
                 environ: Mapping[str, str] | None = None) -> ThreadPlan:
    """The plan for ``train.threads`` (``"auto"`` or a number) given the cores this process may
    use and the runs that share them. ``environ`` is the user's environment: ``auto`` takes
    its ``OMP_NUM_THREADS`` when it sets one, and the waiting policy is passive unless it sets
    ``OMP_WAIT_POLICY`` itself."""
    if isinstance(setting, bool) or not (setting in ("auto", "follow")
                                         or isinstance(setting, int)):
        raise ValueError(f"train.threads: must be auto, follow or a number (got {setting!r})")
    cores, runs = max(1, cores), max(1, runs)
    env = environ or {}
    automatic = setting in ("auto", "follow")
    threads = max(1, cores // runs) if automatic else max(1, int(setting))
    if automatic and "MFM_THREADS" not in env:
        # the user's own OMP_NUM_THREADS (not one of our plans) is respected by auto
        try:
            threads = max(1, int(env.get("OMP_NUM_THREADS", "")))
        except ValueError:
            pass
    user = env.get("OMP_WAIT_POLICY", "").strip().lower()
    policy = user if user in ("active", "passive") else "passive"
    # inter-op threads only run independent ops side by side (none in our steps): one is enough
    return ThreadPlan(threads=threads, interop=1, policy=policy, cores=cores, runs=runs,
                      setting=str(setting))


def plan_from_env(environ: Mapping[str, str]) -> ThreadPlan | None:
    """The plan a launcher put in this environment (``ThreadPlan.env``), or None."""
    try:
        threads = int(environ["MFM_THREADS"])
        interop = int(environ.get("MFM_INTEROP_THREADS", "1"))
    except (KeyError, ValueError):
        return None
    policy = environ.get("OMP_WAIT_POLICY", "").strip().lower() or "default"
    return ThreadPlan(threads=max(1, threads), interop=max(1, interop), policy=policy,
                      cores=available_cores(), runs=0,
                      setting=environ.get("MFM_THREADS_FROM", str(threads)))


def apply_before_torch(setting: int | str, *, runs: int = 1,
                       environ: MutableMapping[str, str] | None = None) -> ThreadPlan | None:
    """For a run in this very process (headless): put the plan in ``environ`` (os.environ)
    before torch loads. Returns the plan, or None when torch is already loaded (too late for
    OpenMP's waiting policy; the engine still sets the thread count) or a launcher already
    planned this process (its plan stands)."""
    env = os.environ if environ is None else environ
    if "torch" in sys.modules or "MFM_THREADS" in env:
        return None
    plan = plan_threads(setting, cores=available_cores(), runs=runs, environ=env)
    env.update(plan.env())
    return plan


def read_cpu_jiffies(text: str, cpus: set[int] | None) -> int:
    """Busy jiffies (user, nice, system, irq, softirq, steal) of ``cpus`` (all when None) in
    a ``/proc/stat`` text."""
    busy = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            index = int(name[3:])
        except ValueError:
            continue
        if cpus is not None and index not in cpus:
            continue
        f = [int(v) for v in rest.split()[:8]]
        f += [0] * (8 - len(f))
        busy += f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
    return busy


def threads_for_load(planned: int, cores: int, others: float) -> int:
    """``auto`` under load: the cores the other processes leave free (``others``: the cores
    they kept busy lately), rounded, at least 1 and at most the plan."""
    return max(1, min(planned, round(cores - others)))
