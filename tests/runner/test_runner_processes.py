"""The queue with real processes: supervisor, run processes, kill -9, cancel, resume, SIGHUP."""

from __future__ import annotations

import os
import pty
import re
import signal
import subprocess
import time

import pytest
from proc_helpers import TINY, mfm_exe, wait_for

from mfm.runner.procs import is_alive
from mfm.store import Database, repo

# real subprocesses / processes racing on one database: the CI run, not the inner loop
pytestmark = pytest.mark.slow

# digits with a tiny ResNet and batch 16: about 30 steps and well under a second per epoch
SLOW = ["--set", "train.batch_size=16"]


def test_queue_to_completed_with_auto_started_supervisor(env):
    res = env.mfm("run", *TINY, "--set", "train.epochs=2", "--name", "q1")
    assert res.returncode == 0, res.stderr
    run_id = int(res.stdout.strip())
    assert "queued" in res.stderr
    wait_for(lambda: env.status(run_id) == "completed", 120, "the queued run to complete")
    rec = env.run(run_id)
    assert rec.slot == "cpu0" and rec.pid and rec.code_version
    assert rec.started_at >= rec.queued_at and rec.finished_at >= rec.started_at
    assert rec.epoch == 1 and rec.summary["final"]["epoch"] == 1
    log = env.mfm("logs", str(run_id), check=True).stdout
    assert "epoch 2:" in log and "completed" in log
    holder = env.holder()
    assert holder and holder["pid"] != os.getpid()


def test_kill_9_of_a_run_is_lost_then_resume_completes(env):
    env.start_worker("--heartbeat-timeout", "3")
    run_id = env.enqueue(*SLOW, epochs=60)
    wait_for(lambda: (env.run(run_id).epoch or 0) >= 1, 120, "two epochs to be recorded")
    rec = env.run(run_id)
    os.killpg(rec.pid, signal.SIGKILL)
    wait_for(lambda: env.status(run_id) == "lost", 60, "the run to be marked lost")
    lost = env.run(run_id)
    assert "killed by signal 9" in lost.error and "mfm resume" in lost.error
    done_before = lost.epoch
    res = env.mfm("resume", str(run_id), check=True)
    assert f"after epoch {done_before + 1}/60" in res.stdout
    wait_for(lambda: env.status(run_id) == "completed", 240, "the resumed run to complete")
    final = env.run(run_id)
    assert final.attempt == 1 and final.epoch == 59
    log = env.mfm("logs", str(run_id), check=True).stdout
    assert "attempt 1 (resume)" in log
    # the kill can land after an epoch's checkpoint and before its record: then the
    # checkpoint is one epoch ahead, and the resumed run records that epoch from it
    held = int(re.search(r"checkpoint holds epoch (\d+):", log).group(1))
    assert held in (done_before + 1, done_before + 2)
    assert f"epochs {held + 1}..60" in log
    with Database(str(env.db_path)) as db:
        assert [e for e, _ in repo.get_epoch_series(db, run_id)["acc"]] == list(range(60))


def test_kill_9_of_the_supervisor_leaves_runs_running_and_a_new_one_readopts(env):
    first = env.start_worker("--heartbeat-timeout", "5")
    run_id = env.enqueue(*SLOW, epochs=40)
    wait_for(lambda: env.status(run_id) == "running", 120, "the run to start")
    rec = env.run(run_id)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    assert is_alive(rec.pid, rec.proc_start)  # the run lives on without its supervisor
    wait_for(lambda: env.holder() is None, 10, "the dead supervisor's lock to be free")
    second = env.start_worker("--heartbeat-timeout", "5")
    wait_for(lambda: b"re-adopted" in (env.tmp / "worker-1.log").read_bytes(), 30,
             "the new supervisor to re-adopt the run")
    wait_for(lambda: env.status(run_id) == "completed", 240, "the run to complete")
    assert second.poll() is None


def test_cancel_queued_and_running(env):
    env.start_worker()
    running = env.enqueue(*SLOW, epochs=200)
    queued = env.enqueue(epochs=2)
    wait_for(lambda: (env.run(running).epoch or -1) >= 0, 120, "the first run's first epoch")
    assert env.status(queued) == "queued"
    res = env.mfm("cancel", str(queued), check=True)
    assert "cancelled (it was queued)" in res.stdout
    assert env.status(queued) == "cancelled"
    t0 = time.monotonic()
    res = env.mfm("cancel", str(running), check=True)
    assert "SIGTERM" in res.stdout
    wait_for(lambda: env.status(running) == "cancelled", 30, "the running run to stop")
    assert time.monotonic() - t0 < 30
    rec = env.run(running)
    assert rec.error is None  # stopped by itself, not killed
    assert (env.runs / str(running) / "last.pt").exists()
    assert env.status(queued) == "cancelled"  # the supervisor never started it


def test_second_supervisor_on_one_database_is_refused(env):
    first = env.start_worker()
    res = env.mfm("worker")
    assert res.returncode == 2
    assert "already serves" in res.stderr and f"pid {first.pid}" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert first.poll() is None


def test_closing_the_terminal_that_started_everything(env):
    """SIGHUP: a shell on a pseudo-terminal queues a run (starting the supervisor) and the
    terminal goes away; the run must still complete."""
    cmd = " ".join([*mfm_exe(), "run", *TINY, "--set", "train.epochs=3", *SLOW,
                    ">", str(env.tmp / "id.txt"), "2>&1;", "sleep", "600"])
    pid, master = pty.fork()
    if pid == 0:  # the child: a shell whose controlling terminal is the pty
        # a terminal's shell takes SIGHUP's default action, whoever started the tests (nohup
        # leaves it ignored, and an ignored signal stays ignored across exec)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        os.execvpe("bash", ["bash", "-c", cmd], env.env)
    try:
        wait_for(lambda: (env.tmp / "id.txt").exists() and
                 (env.tmp / "id.txt").read_text().strip().splitlines()[-1:] and
                 (env.tmp / "id.txt").read_text().strip().splitlines()[-1].isdigit(),
                 60, "the run id")
        run_id = int((env.tmp / "id.txt").read_text().strip().splitlines()[-1])
        os.close(master)  # the terminal closes: the kernel hangs up its session
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGHUP
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: env.status(run_id) == "completed", 120, "the run to complete after SIGHUP")


def test_bad_queue_input_exit_2_records_unchanged(env):
    run_id = env.enqueue(epochs=1)
    wait_for(lambda: env.status(run_id) == "completed", 120, "the run to complete")
    before = env.run(run_id)
    for args, words in ((["cancel", "42"], "no run 42"), (["resume", "42"], "no run 42"),
                        (["resume", str(run_id)], "nothing to resume"),
                        (["cancel", str(run_id)], "nothing to cancel"),
                        (["worker", "--gpus", "3"], "GPU 3 does not exist"),
                        (["worker", "--per-gpu", "0"], "--per-gpu: must be >= 1")):
        res = env.mfm(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert words in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert env.run(run_id) == before


def test_worker_status_names_the_supervisor(env):
    w = env.start_worker()
    res = env.mfm("worker", "status", check=True)
    assert f"pid {w.pid}" in res.stdout and "cpu0" in res.stdout
    w.send_signal(signal.SIGTERM)
    assert w.wait(timeout=20) == 0
    res = env.mfm("worker", "status", check=True)
    assert "no supervisor serves" in res.stdout


def test_a_run_that_ignores_sigterm_is_killed_after_the_grace_period(env):
    env.start_worker("--grace", "2")
    run_id = env.enqueue(*SLOW, epochs=200)
    wait_for(lambda: env.status(run_id) == "running", 120, "the run to start")
    rec = env.run(run_id)
    os.killpg(rec.pid, signal.SIGSTOP)  # frozen: it cannot act on SIGTERM
    try:
        res = env.mfm("cancel", str(run_id), check=True)
        assert "SIGTERM sent" in res.stdout
        wait_for(lambda: env.status(run_id) == "cancelled", 60, "the supervisor to escalate")
    finally:
        try:
            os.killpg(rec.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    final = env.run(run_id)
    assert "killed with SIGKILL" in final.error
    wait_for(lambda: not is_alive(rec.pid, rec.proc_start), 10, "the process to be gone")


def test_cancel_reaches_a_foreground_headless_run(env):
    proc = subprocess.Popen([*mfm_exe(), "run", "--headless", *TINY, *SLOW,
                             "--set", "train.epochs=300"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env.env, cwd=env.tmp)
    try:
        wait_for(lambda: env.db_path.exists() and env.run(1) is not None
                 and env.run(1).epoch is not None, 120, "the first epoch")
        res = env.mfm("cancel", "1", check=True)
        assert "SIGTERM sent" in res.stdout
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert env.status(1) == "cancelled"
