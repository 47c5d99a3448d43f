"""Slots, the lock, process identity, network filesystems, and atomic claims."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import pytest

from mfm.runner.gpus import GpuInfo
from mfm.runner.lock import SupervisorLock, lock_path_for
from mfm.runner.procs import is_alive, process_start_time
from mfm.runner.supervisor import SlotError, plan_slots
from mfm.store import Database, queue, repo
from mfm.store.fsinfo import on_network_fs, warn_if_network_fs

GPUS = [GpuInfo(0, "A", 80000), GpuInfo(1, "B", 80000)]


def test_plan_slots():
    assert [s.name for s in plan_slots([], gpus=None, per_gpu=1, cpu_slots=2)] == ["cpu0", "cpu1"]
    slots = plan_slots(GPUS, gpus=None, per_gpu=2, cpu_slots=1)
    assert [(s.name, s.visible_devices) for s in slots] == [
        ("gpu0.0", "0"), ("gpu0.1", "0"), ("gpu1.0", "1"), ("gpu1.1", "1")]
    assert [s.name for s in plan_slots(GPUS, gpus=[1], per_gpu=1, cpu_slots=1)] == ["gpu1"]
    with pytest.raises(SlotError, match="GPU 2 does not exist.*GPUs here: 0, 1"):
        plan_slots(GPUS, gpus=[2], per_gpu=1, cpu_slots=1)
    with pytest.raises(SlotError, match="--per-gpu"):
        plan_slots(GPUS, gpus=None, per_gpu=0, cpu_slots=1)


@pytest.mark.slow  # a real subprocess
def test_process_identity_survives_pid_reuse():
    me = process_start_time(os.getpid())
    assert me and is_alive(os.getpid(), me)
    assert not is_alive(os.getpid(), me + "0")  # same pid, another start time: not ours
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    start = process_start_time(p.pid)
    p.wait()
    assert not is_alive(p.pid, start)


def test_lock_holder_and_release(tmp_path):
    path = lock_path_for(str(tmp_path / "x.db"), tmp_path / "runs", host="h1")
    assert path.name == "x.db.h1.worker.lock"
    a, b = SupervisorLock(path), SupervisorLock(path)
    assert a.acquire({"pid": 123, "host": "h1"})
    assert not b.acquire({"pid": 456})
    assert b.holder()["pid"] == 123
    a.release()
    assert b.holder() is None and b.acquire({"pid": 456})
    b.release()


@pytest.mark.slow  # a real subprocess
def test_lock_dies_with_its_process(tmp_path):
    path = tmp_path / "l.lock"
    code = ("import sys; from mfm.runner.lock import SupervisorLock; from pathlib import Path;"
            f"assert SupervisorLock(Path({str(path)!r})).acquire({{'pid': 1}}); print('ok', "
            "flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ok"
    assert SupervisorLock(path).holder() == {"pid": 1, "locked_at": pytest.approx(
        SupervisorLock(path).holder()["locked_at"])}
    p.kill()
    p.wait()
    assert SupervisorLock(path).holder() is None


MOUNTS = """/dev/vda / ext4 rw 0 0
server:/export /mnt/shared nfs4 rw 0 0
host:/x /home/me/sshfs fuse.sshfs rw 0 0
"""


def test_network_filesystem_detection(tmp_path, capsys):
    assert on_network_fs("/mnt/shared/proj", MOUNTS) == "nfs4"
    assert on_network_fs("/home/me/sshfs/a", MOUNTS) == "fuse.sshfs"
    assert on_network_fs("/home/me/local", MOUNTS) is None
    assert warn_if_network_fs("/mnt/shared/proj/experiments.db", mounts_text=MOUNTS) == "nfs4"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "network filesystem (nfs4)" in err
    assert warn_if_network_fs("postgresql://h/db", mounts_text=MOUNTS) is None


def _claim_all(path: str, host: str, out) -> None:
    with Database(path) as db:
        got = []
        while (rec := queue.claim_next(db, host=host, slot="s")) is not None:
            got.append(rec.id)
        out.put(got)


@pytest.mark.slow  # a real subprocess
def test_two_supervisors_never_claim_the_same_run(tmp_path):
    path = str(tmp_path / "q.db")
    with Database(path) as db:
        ids = [queue.enqueue_run(db, config={"i": i}, epochs_total=1) for i in range(60)]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(path, f"host{k}", out)) for k in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    a, b = results
    assert not set(a) & set(b) and sorted(a + b) == ids
    with Database(path) as db:
        assert {r.status for r in repo.list_runs(db)} == {"starting"}


def test_transitions_are_guarded_and_resume_rules(tmp_path):
    with Database(str(tmp_path / "t.db")) as db:
        rid = queue.enqueue_run(db, config={}, epochs_total=1)
        assert queue.request_cancel(db, rid) == "cancelled"
        assert not queue.transition(db, rid, "running", allowed_from=("starting",))
        rec = queue.request_resume(db, rid)
        assert rec.status == "queued" and rec.attempt == 1 and rec.resume_requested
        with pytest.raises(queue.QueueError, match="already queued"):
            queue.request_resume(db, rid)
        assert queue.claim_next(db, host="h", slot="cpu0").id == rid
        assert queue.request_cancel(db, rid) == "requested"
        assert queue.transition(db, rid, "completed")
        with pytest.raises(queue.QueueError, match="nothing to resume"):
            queue.request_resume(db, rid)
        with pytest.raises(queue.QueueError, match="no run 99"):
            queue.request_cancel(db, 99)
