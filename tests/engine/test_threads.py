"""train.threads: the plan (cores, affinity, cgroup quota, runs sharing them), the environment a
run process really starts with, and what the run records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import fit_tiny

from mfm.engine.threads import apply_threads, follows_load
from mfm.runner.threads import child_env, prepare_headless, threads_setting
from mfm.threads import (
    available_cores,
    cgroup_cpu_limit,
    plan_from_env,
    plan_threads,
    read_cpu_jiffies,
    read_cpu_max,
    threads_for_load,
)

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {k: v for k, v in os.environ.items()
         if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "MFM_THREADS",
                      "MFM_INTEROP_THREADS", "MFM_THREADS_FROM")}


@pytest.mark.parametrize("setting, cores, runs, threads", [
    ("auto", 8, 1, 8), ("auto", 8, 3, 2), ("auto", 8, 4, 2), ("auto", 2, 2, 1),
    ("auto", 2, 4, 1), ("auto", 1, 1, 1), (3, 8, 4, 3), (1, 2, 1, 1), (6, 2, 1, 6),
])
def test_the_plan_divides_the_cores_among_the_runs(setting, cores, runs, threads):
    plan = plan_threads(setting, cores=cores, runs=runs, environ={})
    assert plan.threads == threads
    assert plan.policy == "passive" and plan.interop == 1
    assert (plan.cores, plan.runs, plan.setting) == (cores, runs, str(setting))
    env = plan.env()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["MFM_THREADS"] == str(threads)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["MFM_THREADS_FROM"] == str(setting)


def test_the_users_own_environment_is_respected_by_auto_only():
    user = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "active"}
    assert plan_threads("auto", cores=8, runs=1, environ=user).threads == 3
    assert plan_threads("auto", cores=8, runs=1, environ=user).policy == "active"
    assert plan_threads(2, cores=8, runs=1, environ=user).threads == 2
    # one of our own plans in the environment is not the user's wish
    ours = {"OMP_NUM_THREADS": "1", "MFM_THREADS": "1"}
    assert plan_threads("auto", cores=8, runs=2, environ=ours).threads == 4


@pytest.mark.parametrize("bad", ["4", "many", True, 0.5])
def test_a_bad_setting_is_refused(bad):
    with pytest.raises(ValueError, match="train.threads"):
        plan_threads(bad, cores=2)


@pytest.mark.parametrize("affinity, quota, cores", [
    (8, None, 8), (8, 2.5, 2), (8, 0.5, 1), (2, 16.0, 2), (4, 4.0, 4), (1, None, 1),
])
def test_cores_are_the_affinity_capped_by_the_quota(affinity, quota, cores):
    assert available_cores(affinity=affinity, quota=quota, probe=False) == cores


def test_cores_of_this_process_are_its_affinity_at_most():
    n = available_cores()
    assert 1 <= n <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize("text, cores", [
    ("max 100000", None), ("150000 100000", 1.5), ("200000 100000\n", 2.0), ("junk", None),
    ("-1 100000", None),
])
def test_cpu_max_is_read(text, cores):
    assert read_cpu_max(text) == cores


def test_a_cgroup_v2_quota_is_the_tightest_on_the_path(tmp_path):
    root = tmp_path / "cg"
    (root / "a" / "b").mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")
    (root / "a" / "cpu.max").write_text("250000 100000\n")
    (root / "a" / "b" / "cpu.max").write_text("max 100000\n")
    me = tmp_path / "cgroup"
    me.write_text("0::/a/b\n")
    assert cgroup_cpu_limit(root=root, self_cgroup=me) == 2.5
    (root / "a" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(root=root, self_cgroup=me) is None


def test_a_cgroup_v1_quota_is_read(tmp_path):
    root = tmp_path / "cg"
    d = root / "cpu,cpuacct" / "job"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("150000\n")
    (d / "cpu.cfs_period_us").write_text("100000\n")
    (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    me = tmp_path / "cgroup"
    me.write_text("4:memory:/job\n3:cpu,cpuacct:/job\n0::/\n")
    assert cgroup_cpu_limit(root=root, self_cgroup=me) == 1.5
    assert cgroup_cpu_limit(root=root, self_cgroup=tmp_path / "missing") is None


def test_the_setting_is_read_from_a_resolved_config():
    assert threads_setting({"train": {"threads": 3}}) == 3
    assert threads_setting({"train": {"threads": "auto"}}) == "auto"
    assert threads_setting({"train": {}}) == "auto"  # recorded before the key existed
    assert threads_setting({}) == "auto"


def test_the_supervisors_env_replaces_an_inherited_plan_and_keeps_the_rest():
    inherited = {"PATH": "/bin", "MFM_THREADS": "7", "OMP_NUM_THREADS": "7",
                 "OMP_WAIT_POLICY": "PASSIVE"}
    env, plan = child_env({"train": {"threads": "auto"}}, runs=2, environ=inherited, cores=4)
    assert plan.threads == 2 and env["OMP_NUM_THREADS"] == "2" and env["PATH"] == "/bin"


def _torch_threads_in(env: dict[str, str], setting: str = "auto") -> dict[str, object]:
    """A real run process: python started with ``env``, torch's threads read before and after
    the engine applies its plan."""
    code = ("import json, torch\n"
            "before = torch.get_num_threads()\n"
            "from mfm.engine.threads import apply_threads\n"
            f"used = apply_threads({setting!r})\n"
            "print(json.dumps({'before': before, 'after': torch.get_num_threads(), **used}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("runs", [1, 2])
def test_the_child_process_runs_with_the_planned_threads(runs):
    env, plan = child_env({"train": {"threads": "auto"}}, runs=runs, environ=CLEAN, cores=2)
    got = _torch_threads_in(env)
    assert plan.threads == 2 // runs
    # OpenMP read the plan when torch loaded: the count holds before the engine touches it
    assert got["before"] == got["after"] == got["threads"] == plan.threads
    assert got["policy"] == "passive" and got["planned_by"] == "launcher"


def test_a_fixed_count_reaches_the_child_process():
    env, plan = child_env({"train": {"threads": 1}}, runs=4, environ=CLEAN, cores=2)
    got = _torch_threads_in(env, setting=1)  # type: ignore[arg-type]
    assert got["before"] == got["threads"] == 1 and got["setting"] == "1"


def test_a_headless_run_plans_before_torch_loads():
    code = ("import json, os, sys\n"
            "from mfm.runner.threads import prepare_headless\n"
            "assert 'torch' not in sys.modules\n"
            "plan = prepare_headless({'train': {'threads': 1}})\n"
            "import torch\n"
            "print(json.dumps({'planned': plan is not None, 'threads': torch.get_num_threads(),\n"
            "                  'policy': os.environ['OMP_WAIT_POLICY']}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=CLEAN, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got == {"planned": True, "threads": 1, "policy": "PASSIVE"}


def test_headless_planning_is_too_late_once_torch_is_loaded():
    import torch  # noqa: F401  (loaded in this process, as in every engine test)

    env: dict[str, str] = {}
    assert prepare_headless({"train": {"threads": 1}}, environ=env) is None and env == {}


def test_a_plan_is_read_back_from_the_environment():
    plan = plan_from_env({"MFM_THREADS": "3", "MFM_INTEROP_THREADS": "1",
                          "OMP_WAIT_POLICY": "PASSIVE", "MFM_THREADS_FROM": "auto"})
    assert plan is not None and (plan.threads, plan.policy, plan.setting) == (3, "passive", "auto")
    assert plan_from_env({}) is None and plan_from_env({"MFM_THREADS": "x"}) is None


def test_apply_threads_without_a_plan_plans_here(monkeypatch):
    import torch

    env = {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # this process's count stays
    used = apply_threads("auto", environ=env)
    assert used["planned_by"] == "engine" and used["threads"] == torch.get_num_threads()
    assert used["policy"] == "default"  # nobody set OpenMP's policy before torch loaded


def test_the_run_records_the_threads_it_used(monkeypatch):
    import torch

    n = torch.get_num_threads()  # keep this process's count (tests run side by side)
    monkeypatch.setenv("MFM_THREADS", str(n))
    monkeypatch.setenv("MFM_INTEROP_THREADS", str(torch.get_num_interop_threads()))
    monkeypatch.setenv("MFM_THREADS_FROM", "auto")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    rec = fit_tiny(["method.name=ce", "train.epochs=1"])
    start = rec.info
    assert start is not None and start.threads is not None
    assert start.threads["threads"] == n and start.threads["policy"] == "passive"
    assert start.threads["planned_by"] == "launcher" and start.threads["setting"] == "auto"
    assert rec.summary is not None and rec.summary["threads"] == start.threads
    assert rec.summary["execution"] == {"amp": "off", "channels_last": False, "compile": "off"}


def test_planning_loads_no_torch():
    code = ("import sys, mfm.threads, mfm.runner.threads, mfm.runner.supervisor\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], env=CLEAN, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert out.strip() == "False"


def test_headless_planning_takes_a_config_too():
    from mfm.config import load_config

    code = ("import json, os\n"
            "from mfm.config import load_config\n"
            "from mfm.runner.threads import prepare_headless\n"
            "plan = prepare_headless(load_config(None, ['train.threads=1']))\n"
            "print(json.dumps([plan.threads, os.environ['OMP_NUM_THREADS']]))\n")
    out = subprocess.run([sys.executable, "-c", code], env=CLEAN, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [1, "1"]
    assert load_config(None, []).train.threads == "auto"


@pytest.mark.parametrize("planned, cores, others, threads", [
    (2, 2, 0.05, 2), (2, 2, 0.4, 2), (2, 2, 0.6, 1), (2, 2, 1.0, 1), (2, 2, 5.0, 1),
    (8, 8, 3.0, 5), (1, 8, 0.0, 1), (4, 8, 0.0, 4),
])
def test_auto_uses_the_cores_other_processes_leave(planned, cores, others, threads):
    assert threads_for_load(planned, cores, others) == threads


STAT = """cpu  {t} 0 0 0 0 0 0 0 0 0
cpu0 {a} 0 {a} 100 5 1 1 0 0 0
cpu1 {b} 0 0 100 5 0 0 0 0 0
cpu2 {c} 0 0 100 5 0 0 0 0 0
intr 12345
"""


def test_busy_jiffies_are_summed_over_the_cpu_set():
    text = STAT.format(t=0, a=10, b=20, c=40)
    assert read_cpu_jiffies(text, None) == 10 + 10 + 2 + 20 + 40
    assert read_cpu_jiffies(text, {1, 2}) == 60
    assert read_cpu_jiffies(text, {7}) == 0


def test_the_load_follower_drops_a_thread_for_a_busy_neighbour_and_takes_it_back(tmp_path):
    from mfm.engine.threads import _TICKS, LoadFollower

    stat = tmp_path / "stat"
    now = {"wall": 0.0, "cpu": 0.0, "busy": 0}
    stat.write_text(STAT.format(t=0, a=0, b=0, c=0))
    set_to: list[int] = []

    def advance(seconds: float, own_cores: float, other_cores: float) -> None:
        now["wall"] += seconds
        now["cpu"] += seconds * own_cores
        now["busy"] += round(seconds * (own_cores + other_cores) * _TICKS)
        stat.write_text(STAT.format(t=0, a=0, b=now["busy"], c=0))

    f = LoadFollower(2, every=2.0, stat=stat, cpus={0, 1}, clock=lambda: now["wall"],
                     cpu_clock=lambda: now["cpu"], set_threads=set_to.append)
    advance(1.0, 2.0, 1.0)
    f.step()  # not yet: looks once per 2 s
    assert set_to == []
    advance(1.5, 1.0, 1.0)  # a busy loop beside the run: one core is taken
    f.step()
    assert set_to == [1] and f.current == 1
    advance(2.5, 1.0, 0.02)  # it is gone
    f.step()
    assert set_to == [1, 2] and f.used == [2, 1]
    advance(2.5, 2.0, 0.0)
    f.step()
    assert set_to == [1, 2]  # unchanged: nothing set


def test_the_load_is_followed_only_for_follow_with_several_threads():
    used = {"setting": "follow", "threads": 2}
    assert follows_load(used, environ={})
    assert follows_load(used, environ={"OMP_NUM_THREADS": "2", "MFM_THREADS": "2"})
    assert not follows_load(used, environ={"OMP_NUM_THREADS": "2"})  # the user pinned it
    assert not follows_load({"setting": "2", "threads": 2}, environ={})
    assert not follows_load({"setting": "follow", "threads": 1}, environ={})
    # auto keeps one count for the whole run: a run and its resume are bit-reproducible
    assert not follows_load({"setting": "auto", "threads": 2}, environ={})


def test_auto_keeps_one_thread_count_so_runs_reproduce():
    from mfm.config import load_config

    assert load_config(None, []).train.threads == "auto"
    assert load_config(None, ["train.threads=follow"]).train.threads == "follow"
