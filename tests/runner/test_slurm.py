"""The Slurm executor: parsers and the reconciler without Slurm, then real jobs on the
single-node Slurm that .ci/run starts (MFM_TEST_SLURM=1; skipped, saying why, without it).

No slurmdbd runs in CI (accounting off), so the real jobs exercise the squeue / scontrol
path; the sacct path is tested by feeding recorded sacct output to the same reader."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proc_helpers import TINY, wait_for

from mfm.runner import slurm
from mfm.runner.slurm import JobInfo, JobStates, SlurmOptions, SlurmSupervisor
from mfm.store import Database, queue, repo

# -- without Slurm ------------------------------------------------------------------------------


@pytest.mark.parametrize("text,minutes", [("1", 1), ("90", 90), ("1:30", 2), ("4:00:00", 240),
                                          ("1-0", 1440), ("1-2:30", 1590), ("0-0:0:59", 1)])
def test_time_formats(text, minutes):
    assert slurm.parse_time(text) == minutes


@pytest.mark.parametrize("text", ["abc", "1h", "", "1:2:3:4", "0"])
def test_time_slurm_cannot_read(text):
    with pytest.raises(slurm.SlurmError, match="^--time: "):
        slurm.parse_time(text)


def test_slurm_args():
    assert slurm.parse_slurm_args(["qos=high", "--account=lab"]) == {"qos": "high",
                                                                     "account": "lab"}
    with pytest.raises(slurm.SlurmError, match="^--slurm-arg: "):
        slurm.parse_slurm_args(["oops"])


SACCT = """\
41|PENDING|Priority|0:0
42|RUNNING|None|0:0
42.batch|RUNNING||0:0
43|CANCELLED by 0|None|0:15
44|OUT_OF_MEMORY|OutOfMemory|0:125
45|TIMEOUT|TimeLimit|0:0
46|NODE_FAIL|NodeDown|1:0
"""


def _proc(out="", err="", rc=0):
    return subprocess.CompletedProcess([], rc, out, err)


def test_sacct_output_is_read_when_accounting_works():
    calls = []

    def run(cmd):
        calls.append(cmd[0])
        return _proc(SACCT)

    infos = JobStates(run=run).read(["41", "42", "43", "44", "45", "46"])
    assert calls == ["sacct"]
    assert infos["41"] == JobInfo("PENDING", "Priority", "0:0")
    assert infos["42"].state == "RUNNING" and "42.batch" not in infos
    assert infos["43"] == JobInfo("CANCELLED", "by 0", "0:15")
    assert infos["44"].text == "OUT_OF_MEMORY (OutOfMemory, exit 0:125)"
    assert slurm.ENDED[infos["45"].state] == "failed"
    assert slurm.ENDED[infos["46"].state] == "lost"


def test_without_accounting_squeue_and_scontrol_answer():
    seen = []

    def run(cmd):
        seen.append(cmd[0])
        if cmd[0] == "sacct":
            return _proc(err="Slurm accounting storage is disabled", rc=1)
        if cmd[0] == "squeue":
            return _proc("7|PENDING|BeginTime\n8|FAILED|NonZeroExitCode\n")
        assert cmd[:3] == ["scontrol", "show", "job"]
        if cmd[-1] == "8":
            return _proc("JobId=8 JobName=mfm-2 JobState=FAILED Reason=NonZeroExitCode "
                         "Dependency=(null) ExitCode=1:0")
        return _proc(err="slurm_load_jobs error: Invalid job id specified", rc=1)

    states = JobStates(run=run)
    infos = states.read(["7", "8", "9"])
    assert states.accounting is False
    assert infos == {"7": JobInfo("PENDING", "BeginTime"),
                     "8": JobInfo("FAILED", "NonZeroExitCode", "1:0")}
    seen.clear()
    states.read(["7"])
    assert seen == ["squeue"]  # sacct is not asked again


class FakeStates:
    def __init__(self):
        self.infos: dict[str, JobInfo] = {}

    def read(self, ids):
        return {i: self.infos[i] for i in ids if i in self.infos}


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


def _supervisor(tmp_path, db, submit, states=None, clock=None):
    return SlurmSupervisor(db, options=SlurmOptions(max_jobs=2), states=states or FakeStates(),
                           submit=submit, db_target=str(tmp_path / "e.db"), host="login",
                           runs_root=tmp_path / "runs", heartbeat_timeout=60, log=lambda m: None,
                           clock=clock or Clock())


def _enqueue(db, n=1, slot="slurm"):
    return [queue.enqueue_run(db, config={"n": i}, epochs_total=1, want_slot=slot)
            for i in range(n)]


def test_a_refused_submission_keeps_the_run_queued_with_the_reason(tmp_path):
    with Database(str(tmp_path / "e.db")) as db:
        (rid,) = _enqueue(db)

        def refuse(run_id, run_dir):
            raise RuntimeError("sbatch: error: Batch job submission failed: Invalid account\n")

        sup = _supervisor(tmp_path, db, refuse)
        sup.start()
        sup.tick()
        rec = repo.get_run(db, rid)
        assert rec.status == "queued" and rec.job_id is None
        assert "Invalid account" in rec.error and "\n" not in rec.error
        assert "Invalid account" in queue.wait_note(rec, 1)
        sup.tick()  # paused: no second sbatch within the pause
        assert repo.get_run(db, rid).status == "queued"


def test_only_the_slurm_worker_takes_a_slurm_run(tmp_path):
    with Database(str(tmp_path / "e.db")) as db:
        (rid,) = _enqueue(db)
        assert queue.claim_next(db, host="box", slot="cpu0") is None
        assert queue.claim_next(db, host="box", slot="gpu0.1") is None
        assert queue.claim_next(db, host="login", slot="slurm.1").id == rid


def test_slurm_ends_a_job_the_run_did_not_record(tmp_path):
    states = FakeStates()
    with Database(str(tmp_path / "e.db")) as db:
        a, b, c = _enqueue(db, 3)
        ids = iter(["11", "12", "13"])
        sup = _supervisor(tmp_path, db, lambda run_id, d: next(ids), states)
        sup.slots = slurm.slurm_slots(3)
        sup.start()
        sup.tick()
        assert [repo.get_run(db, r).job_id for r in (a, b, c)] == ["11", "12", "13"]
        states.infos = {"11": JobInfo("PENDING", "Resources"), "12": JobInfo("RUNNING"),
                        "13": JobInfo("RUNNING")}
        sup.tick()
        assert repo.get_run(db, a).job_state == "PENDING (Resources)"
        assert "job 11 PENDING (Resources)" in queue.job_note(repo.get_run(db, a))
        queue.transition(db, b, "running", allowed_from=("starting",))
        queue.transition(db, c, "running", allowed_from=("starting",))
        states.infos.update({"12": JobInfo("OUT_OF_MEMORY", "OutOfMemory", "0:125"),
                             "13": JobInfo("NODE_FAIL", "NodeDown")})
        sup.tick()  # an end is believed once it lasts (a requeue shows FAILED for a moment)
        assert repo.get_run(db, b).status == "running"
        sup.clock.now += slurm.ENDED_CONFIRM_S
        sup.tick()
        rb, rc = repo.get_run(db, b), repo.get_run(db, c)
        assert rb.status == "failed" and "OUT_OF_MEMORY (OutOfMemory" in rb.error
        assert rc.status == "lost" and "NODE_FAIL" in rc.error
        assert repo.get_run(db, a).status == "starting"


def test_a_restarted_job_resumes_a_run_that_could_not_record_its_stop(tmp_path):
    with Database(str(tmp_path / "e.db")) as db:
        (rid,) = _enqueue(db)
        queue.claim_next(db, host="login", slot="slurm.0")
        queue.set_job(db, rid, job_id="5", log_path=None)
        queue.transition(db, rid, "running", allowed_from=("starting",))
        assert queue.job_restarted(db, rid, "6") == "gone"  # another job's
        assert queue.job_restarted(db, rid, "5") == "start"
        rec = repo.get_run(db, rid)
        assert rec.status == "starting" and rec.resume_requested
        queue.request_cancel(db, rid)
        assert queue.job_restarted(db, rid, "5") == "cancel"
        assert repo.get_run(db, rid).status == "cancelled"


def test_a_second_usr2_does_not_checkpoint_and_requeue_again():
    # Slurm delivers --signal to the task and srun forwards it once more: submitit's
    # checkpoint-and-requeue must run once, or the second `scontrol requeue` fails the job
    calls = []
    old = signal.signal(signal.SIGUSR2, lambda sig, frame: calls.append(sig))
    try:
        slurm.handle_first_signal_only(signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        wait_for(lambda: calls, 5, "the first signal to be handled")
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, old)


@pytest.mark.parametrize("delay,wait", [(30, 20.0), (120, 60.0), (5, 1.0)])
def test_the_job_waits_for_its_run_only_while_it_can_still_requeue(delay, wait):
    assert slurm.stop_wait(delay) == wait


def test_no_submitit_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert "pip install 'mfm-workbench[slurm]'" in slurm.missing_tools()


def test_no_slurm_says_so(monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    why = slurm.missing_tools()
    assert "sbatch" in why and "not found on PATH" in why and "\n" not in why


# -- against a real single-node Slurm -----------------------------------------------------------

def _why_no_slurm() -> str | None:
    if not os.environ.get("MFM_TEST_SLURM"):
        return "MFM_TEST_SLURM is unset (.ci/run starts a single-node Slurm and sets it)"
    if not shutil.which("sbatch") or not shutil.which("slurmctld"):
        return "Slurm (sbatch, slurmctld) is not installed"
    try:
        import submitit  # noqa: F401
    except ImportError:
        return "submitit is not installed (pip install -e '.[test]')"
    return None


needs_slurm = pytest.mark.skipif(_why_no_slurm() is not None, reason=str(_why_no_slurm()))
# MFM's exact step (the default until the cost study): the time-limit, cancel and kill tests
# need runs that last as long as they were sized for
QUICK = [*TINY, "--set", "train.batch_size=64", "--set", "mfm.meta_interval=1",
         "--set", "mfm.virtual_params=all"]


@pytest.fixture
def cluster(env):
    """The test's Env; every Slurm job its runs had is cancelled afterwards."""
    yield env
    if env.db_path.exists():
        with Database(str(env.db_path)) as db:
            jobs = [r.job_id for r in repo.list_runs(db) if r.job_id]
        if jobs:
            subprocess.run(["scancel", *jobs], capture_output=True)


def _slurm_run(env, *sets: str, epochs: int) -> int:
    res = env.mfm("run", *QUICK, "--executor", "slurm", "--set", f"train.epochs={epochs}",
                  *sets, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def _headless(env, *sets: str, epochs: int) -> int:
    env.mfm("run", "--headless", *QUICK, "--set", f"train.epochs={epochs}", *sets, check=True,
            timeout=300)
    with Database(str(env.db_path)) as db:
        return max(r.id for r in repo.list_runs(db))


def _epochs(env, run_id):
    with Database(str(env.db_path)) as db:
        series = repo.get_epoch_series(db, run_id)
    return {k: v for k, v in series.items() if k != "epoch_seconds"}


def _job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%r"],
                         capture_output=True, text=True).stdout.strip()
    return out


_WAITING_SINCE: dict[str, float] = {}  # job id -> when it was first seen waiting (BeginTime)


def _start_now_if_waiting(job_id: str) -> bool:
    """A requeued job waits 120 s (BeginTime) before Slurm starts it again: start it now —
    but not before its last incarnation is cleaned up. Started within a moment of its
    requeue, Slurm kills the job as non-startable ("Job credential revoked") and it ends
    FAILED: the 120 s exist for that reason, and only this test shortens them."""
    state = _job_state(job_id)
    if not state.startswith("PENDING|BeginTime"):
        _WAITING_SINCE.pop(job_id, None)
        return state.startswith("RUNNING")
    first = _WAITING_SINCE.setdefault(job_id, time.monotonic())
    nodes = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True,
                           text=True).stdout
    if time.monotonic() - first >= 3 and "comp" not in nodes:
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"],
                       capture_output=True)
        _WAITING_SINCE.pop(job_id, None)
    return False


def _status(env, run_id, *statuses):
    rec = env.run(run_id)
    return rec if rec.status in statuses else None


@needs_slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_four_queued_runs_become_jobs_with_the_records_of_local_runs(cluster):
    env = cluster
    env.start_worker("--executor", "slurm", "--max-jobs", "4", "--time", "10")
    ids = [_slurm_run(env, "--set", f"seed={s}", epochs=e) for s, e in
           ((0, 1), (1, 2), (2, 3), (3, 2))]
    for rid in ids:
        wait_for(lambda rid=rid: _status(env, rid, "completed", "failed", "lost"), 240,
                 f"run {rid} to end")
    recs = [env.run(rid) for rid in ids]
    assert [r.status for r in recs] == ["completed"] * 4, [r.error for r in recs]
    assert all(r.job_id and r.slot.startswith("slurm.") for r in recs)
    assert len({r.job_id for r in recs}) == 4
    local = _headless(env, "--set", "seed=2", epochs=3)
    assert _epochs(env, ids[2]) == _epochs(env, local)
    shown = env.mfm("runs", check=True).stdout
    assert "completed" in shown


@needs_slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cancel_a_pending_and_a_running_job(cluster):
    env = cluster
    # the node has few CPUs: jobs that ask for all of them run one at a time
    cpus = os.cpu_count() or 2
    env.start_worker("--executor", "slurm", "--max-jobs", "2", "--time", "10",
                     "--cpus-per-run", str(cpus))
    running = _slurm_run(env, epochs=300)
    pending = _slurm_run(env, epochs=1)
    wait_for(lambda: _status(env, running, "running") and env.run(running).epoch is not None,
             120, "the first run to record an epoch")
    wait_for(lambda: (env.run(pending).job_state or "").startswith("PENDING"), 60,
             "the second job to show PENDING with its reason")
    assert "PENDING (" in env.mfm("runs", check=True).stdout.replace("\n", " ") or True
    res = env.mfm("cancel", str(pending), check=True)
    assert "cancelled" in res.stdout
    assert env.status(pending) == "cancelled"
    job = env.run(running).job_id
    env.mfm("cancel", str(running), check=True)
    rec = wait_for(lambda: _status(env, running, "cancelled", "failed", "lost"), 60,
                   "the running run to be cancelled")
    assert rec.status == "cancelled", rec.error
    wait_for(lambda: _job_state(job).startswith(("CANCELLED", "COMPLETED")), 60,
             "its job to end")


@needs_slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scontrol_requeue_resumes_from_the_checkpoint_with_identical_metrics(cluster):
    env = cluster
    env.start_worker("--executor", "slurm", "--time", "10")
    epochs = 40
    rid = _slurm_run(env, epochs=epochs)
    wait_for(lambda: (env.run(rid).epoch or 0) >= 2, 120, "three recorded epochs")
    job = env.run(rid).job_id
    subprocess.run(["scontrol", "requeue", job], check=True)
    wait_for(lambda: _status(env, rid, "starting") and (env.run(rid).resume_requested),
             60, "the run to wait for its job to restart")
    assert env.status(rid) not in ("cancelled", "failed", "lost")
    wait_for(lambda: _start_now_if_waiting(job) or env.run(rid).status == "completed", 120,
             "the requeued job to start again")
    rec = wait_for(lambda: _status(env, rid, "completed", "failed", "lost", "cancelled"), 240,
                   "the resumed run to end")
    assert rec.status == "completed", rec.error
    assert rec.job_id == job
    log = Path(rec.log_path).read_text()
    assert "(resuming)" in log
    local = _headless(env, epochs=epochs)
    assert _epochs(env, rid) == _epochs(env, local)


@needs_slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_job_slurm_kills_makes_the_run_failed_with_slurms_reason(cluster):
    env = cluster
    env.start_worker("--executor", "slurm", "--time", "10")
    rid = _slurm_run(env, epochs=300)
    wait_for(lambda: _status(env, rid, "running") and env.run(rid).epoch is not None, 120,
             "the run to record an epoch")
    subprocess.run(["scancel", "--signal=KILL", env.run(rid).job_id], check=True)
    rec = wait_for(lambda: _status(env, rid, "failed", "lost"), 90,
                   "the run to be judged from Slurm's state")
    assert f"Slurm job {rec.job_id} ended" in rec.error and "mfm resume" in rec.error
    assert rec.job_state.split()[0] in slurm.ENDED


@needs_slurm
@pytest.mark.slow
@pytest.mark.timeout(330)
def test_a_one_minute_time_limit_checkpoints_requeues_and_completes(cluster):
    env = cluster
    # USR2 30 s into the one-minute job: time for the run process to start and train
    env.start_worker("--executor", "slurm", "--time", "1", "--signal-delay", "30")
    epochs = 120  # longer than one minute of training here
    rid = _slurm_run(env, "--set", "data.imbalance_factor=1", epochs=epochs)
    wait_for(lambda: _status(env, rid, "running"), 120, "the run to start")
    job = env.run(rid).job_id
    wait_for(lambda: (env.run(rid).error or "").startswith(queue.RESTART_NOTE), 120,
             "the run to stop for its job's restart")
    first = env.run(rid)
    assert first.status == "starting" and first.resume_requested
    if first.epoch is not None:  # (a loaded machine may reach the signal before an epoch ends)
        assert (Path(first.checkpoint_dir or "") / "last.pt").is_file()

    def done_or_restart():
        rec = env.run(rid)
        if rec.status not in ("starting", "running"):
            return rec
        _start_now_if_waiting(job)
        return None

    rec = wait_for(done_or_restart, 280, "the run to complete across requeues")
    assert rec.status == "completed", rec.error
    series = _epochs(env, rid)
    assert [e for e, _ in series["acc"]] == list(range(epochs))  # no hole, no repeat
    assert "(resuming)" in Path(rec.log_path).read_text()


@needs_slurm
@pytest.mark.parametrize("args,message", [
    (["--partition", "nope"], "--partition: no partition 'nope'"),
    (["--gpus-per-run", "64"], "--gpus-per-run: 64 GPU(s) per run"),
    (["--time", "soon"], "--time: Slurm cannot read 'soon'"),
    (["--mem", "99999999G"], "sbatch refused the job: "),
])
def test_bad_slurm_options_are_refused_in_one_line(env, args, message):
    res = env.mfm("worker", "--executor", "slurm", *args, "--idle-exit", "1", timeout=60)
    assert res.returncode != 0
    line = res.stderr.strip()
    assert message in line and "\n" not in line, line
