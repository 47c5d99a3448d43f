"""Several hosts serving one database: pins (``--host``, ``HOST:SLOT``), claims that honour
them, resumes left for a host that can read their checkpoint, runs of a silent host marked
lost by another one; then real supervisors standing in for three hosts (``MFM_HOSTNAME``) on
one queue. Every test runs on SQLite and on PostgreSQL (``db_url``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from proc_helpers import TINY, mfm_exe, wait_for

from mfm.runner.launch import SlotWishError, check_host_wish, split_pin
from mfm.runner.procs import HOSTNAME_ENV, host_name
from mfm.runner.supervisor import Slot, Supervisor
from mfm.store import Database, queue, repo

CFG = {"method": {"name": "ce"}}
STAND_INS = Path(__file__).with_name("stand_ins")
SLOW = ["--set", "train.batch_size=16"]


def sup(db: Database, host: str, tmp_path: Path, *, clock=time.time, timeout: float = 60.0,
        slots=("cpu0",)) -> Supervisor:
    return Supervisor(db, db_target="unused", host=host, slots=[Slot(s, None) for s in slots],
                      runs_root=tmp_path / "runs", heartbeat_timeout=timeout,
                      log=lambda _: None, clock=clock)


# -- the rules, in one process ----------------------------------------------------------------

def test_host_name_override(monkeypatch):
    monkeypatch.setenv(HOSTNAME_ENV, "box-b")
    assert host_name() == "box-b"
    monkeypatch.setenv(HOSTNAME_ENV, " ")
    assert host_name() == __import__("socket").gethostname()


def test_claims_honour_the_host_pin(db_url):
    with Database(db_url) as db:
        a = queue.enqueue_run(db, config=CFG, epochs_total=1, want_host="b")
        b = queue.enqueue_run(db, config=CFG, epochs_total=1)
        c = queue.enqueue_run(db, config=CFG, epochs_total=1, want_host="b", want_slot="gpu1")
        assert queue.claim_next(db, host="a", slot="gpu1").id == b
        assert queue.claim_next(db, host="a", slot="gpu1") is None  # both left want b
        assert queue.claim_next(db, host="b", slot="gpu0").id == a
        assert queue.claim_next(db, host="b", slot="gpu0") is None  # c wants b's gpu1
        got = queue.claim_next(db, host="b", slot="gpu1")
        assert (got.id, got.host, got.want_host) == (c, "b", "b")


def test_a_resume_waits_for_a_host_that_can_read_its_checkpoint(db_url, tmp_path):
    ckpt = tmp_path / "runs" / "1"
    with Database(db_url) as db:
        run_id = queue.enqueue_run(db, config=CFG, epochs_total=3)
        repo.update_run(db, run_id, checkpoint_dir=str(ckpt))
        queue.claim_next(db, host="a", slot="cpu0")
        queue.transition(db, run_id, "running", allowed_from=("starting",))
        repo.log_epoch(db, run_id, 0, {"acc": 0.5}, [0.5] * 10)
        queue.transition(db, run_id, "lost", error="lost: gone")
        queue.request_resume(db, run_id)
        other = queue.enqueue_run(db, config=CFG, epochs_total=3)
        # host a cannot read it: a takes the next run and the resume says what it waits for
        seen: list[str] = []
        got = queue.claim_next(db, host="a", slot="cpu0",
                               can_read=lambda p: seen.append(p) or False)
        assert got.id == other and seen == [f"{ckpt}/last.pt"]
        rec = repo.get_run(db, run_id)
        assert rec.status == "queued"
        note = queue.wait_note(rec, 1)
        assert note == f"#1 in queue; waits for a host that can read {ckpt}/last.pt (not a)"
        # host b can: it claims the resume, and the note is gone
        got = queue.claim_next(db, host="b", slot="cpu0", can_read=lambda p: True)
        assert got.id == run_id and got.error is None and got.resume_requested


def test_where_a_queued_run_waits():
    from mfm.store.records import RunRecord

    rec = RunRecord(id=3, name=None, status="queued", created_at=0, started_at=None,
                    finished_at=None, host=None, pid=None, device=None, config=CFG,
                    split_hash=None, error=None, summary=None, class_counts=None,
                    confusion=None, epochs_total=1, epoch=None, checkpoint_dir=None,
                    log_path=None, heartbeat_at=None, dataset_spec_id=None, config_id=None,
                    want_slot="gpu1", want_host="box2")
    assert queue.wait_note(rec, 2) == "#2 in queue, wants host box2 gpu1"


def test_a_silent_host_s_runs_are_lost_only_when_nobody_reports(db_url, tmp_path):
    with Database(db_url) as db:
        sup(db, "b", tmp_path, timeout=10).start()  # b's supervisor records itself
        run_id = queue.enqueue_run(db, config=CFG, epochs_total=1)
        assert queue.claim_next(db, host="b", slot="cpu0").id == run_id
        queue.set_process(db, run_id, pid=2 ** 22 + 1, proc_start="elsewhere:1", log_path="x")
        queue.transition(db, run_id, "running", allowed_from=("starting",))
        a = sup(db, "a", tmp_path, timeout=10)
        # b's run stopped reporting, but b's supervisor still does: a leaves it to b
        repo.update_run(db, run_id, heartbeat_at=time.time() - 100)
        a.clock = lambda: time.time() + 5
        a.watch_elsewhere()
        assert repo.get_run(db, run_id).status == "running"
        # b's supervisor is silent too, but the run just reported: still running
        a.clock = lambda: time.time() + 30
        repo.update_run(db, run_id, heartbeat_at=time.time() + 25)
        a.watch_elsewhere()
        assert repo.get_run(db, run_id).status == "running"
        # both silent: lost, saying whose silence and since when
        repo.update_run(db, run_id, heartbeat_at=time.time())
        a.watch_elsewhere()
        rec = repo.get_run(db, run_id)
        assert rec.status == "lost", rec
        assert re.fullmatch(r"lost: host b's supervisor and the run stopped reporting at "
                            r"\d\d:\d\d:\d\d \(judged by a\); resume with: mfm resume "
                            f"{run_id}", rec.error), rec.error


def test_a_run_with_no_supervisor_on_its_host_is_lost_once_silent(db_url, tmp_path):
    with Database(db_url) as db:  # a foreground run on a host that never had a supervisor
        run_id = repo.create_run(db, config=CFG, epochs_total=1)
        queue.transition(db, run_id, "running", allowed_from=("created",))
        repo.update_run(db, run_id, host="laptop", heartbeat_at=time.time())
        a = sup(db, "a", tmp_path, clock=lambda: time.time() + 2, timeout=10)
        a.watch_elsewhere()
        assert repo.get_run(db, run_id).status == "running"
        a.clock = lambda: time.time() + 20
        a.watch_elsewhere()
        rec = repo.get_run(db, run_id)
    assert rec.status == "lost" and "the run on host laptop (no supervisor there)" in rec.error


def test_pins_are_checked_against_the_hosts_seen(db_url, tmp_path):
    assert split_pin("box2:gpu1") == ("box2", "gpu1")
    assert split_pin("gpu1", "box2") == ("box2", "gpu1")
    with pytest.raises(SlotWishError, match="names host 'a' but --host is 'b'"):
        split_pin("a:gpu0", "b")
    with Database(db_url) as db:
        sup(db, "box2", tmp_path, slots=("gpu0", "gpu1")).start()
        assert check_host_wish("box2", db) == ("box2", ["gpu0", "gpu1"])
        assert check_host_wish("", db) == ("", None)
        assert check_host_wish(host_name(), db) == (host_name(), None)
        with pytest.raises(SlotWishError, match=r"host: no supervisor has served this "
                                                r"database on box9 \(hosts seen: box2;"):
            check_host_wish("box9", db)


def test_the_run_process_gets_the_database_through_the_environment(tmp_path, monkeypatch):
    seen = {}

    class Proc:
        pid = os.getpid()

    def popen(cmd, **kw):
        seen.update(cmd=cmd, env=kw["env"])
        return Proc()

    monkeypatch.setattr(subprocess, "Popen", popen)
    url = "postgresql+psycopg://mfm:s3cret@db.lab/mfm"
    with Database(str(tmp_path / "e.db")) as db:
        run_id = queue.enqueue_run(db, config=CFG, epochs_total=1)
        s = sup(db, "a", tmp_path)
        s.db_target = url
        s.launch(run_id, Slot("cpu0", None), attempt=0, resume=False)
    assert not any("s3cret" in part for part in seen["cmd"]), seen["cmd"]
    assert seen["env"]["MFM_DB"] == url and "--db" not in seen["cmd"]


# -- real supervisors standing in for three hosts ---------------------------------------------

class Hosts:
    """Supervisors (``mfm worker``) for several host names on one database and one shared
    runs folder; everything they started is killed at the end."""

    def __init__(self, tmp: Path, db_url: str):
        self.tmp, self.db_url = tmp, db_url
        self.runs = tmp / "runs"
        self.ledger = tmp / "ledger.txt"
        self.env = dict(os.environ, MFM_DB=db_url, MFM_RUNS_DIR=str(self.runs),
                        MFM_FAKE_LEDGER=str(self.ledger),
                        PYTHONPATH=os.pathsep.join([str(STAND_INS),
                                                    os.environ.get("PYTHONPATH", "")]))
        self.procs: dict[str, subprocess.Popen] = {}

    def env_of(self, host: str) -> dict[str, str]:
        return dict(self.env, **{HOSTNAME_ENV: host})

    def start(self, host: str, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"worker-{host}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen([*mfm_exe(), "worker", "--poll", "0.1", *args], stdout=log,
                             stderr=subprocess.STDOUT, env=self.env_of(host), cwd=self.tmp,
                             start_new_session=True)
        log.close()
        self.procs[host] = p
        wait_for(lambda: any(w.host == host and w.stopped_at is None and w.pid == p.pid
                             for w in self.workers()), 60, f"the supervisor of {host}")
        return p

    def mfm(self, host: str, *args: str, check: bool = True):
        res = subprocess.run([*mfm_exe(), *args], capture_output=True, text=True, timeout=120,
                             env=self.env_of(host), cwd=self.tmp)
        if check:
            assert res.returncode == 0, res.stderr[-2000:]
        return res

    def db(self) -> Database:
        return Database(self.db_url)

    def workers(self):
        with self.db() as db:
            return queue.list_workers(db)

    def runs_of(self) -> list:
        with self.db() as db:
            return repo.list_runs(db)

    def run(self, run_id: int):
        with self.db() as db:
            return repo.get_run(db, run_id)

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
        try:
            with self.db() as db:
                for rec in queue.active_runs(db):
                    if rec.pid:
                        try:
                            os.killpg(rec.pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
        except Exception:  # noqa: BLE001 — the database may be gone already
            pass
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def hosts(tmp_path, db_url, monkeypatch):
    monkeypatch.delenv(HOSTNAME_ENV, raising=False)
    h = Hosts(tmp_path, db_url)
    yield h
    h.cleanup()


RUNS = int(os.environ.get("MFM_MULTIHOST_RUNS", "60"))


@pytest.mark.slow
def test_three_hosts_one_queue_every_run_executed_exactly_once(hosts):
    with hosts.db() as db:
        ids = [queue.enqueue_run(db, config=CFG, epochs_total=1) for _ in range(RUNS)]
    for host in ("a", "b", "c"):
        hosts.start(host, "--cpu-slots", "2", "--child-module", "fake_run_child")

    def finished():
        runs = hosts.runs_of()
        return all(r.status not in ("queued", "starting", "running") for r in runs) and runs

    runs = wait_for(finished, 150, f"{RUNS} runs to finish on three hosts")
    assert Counter(r.status for r in runs) == {"completed": RUNS}
    assert all(r.attempt == 0 and r.host in ("a", "b", "c") for r in runs)
    executions = Counter(int(line.split()[0]) for line in hosts.ledger.read_text().splitlines())
    assert sorted(executions) == ids and set(executions.values()) == {1}  # each exactly once
    per_host = Counter(r.host for r in runs)
    assert len(per_host) >= 2, per_host  # the work was shared
    res = hosts.mfm("a", "worker", "status")
    for host in ("a", "b", "c"):
        assert re.search(rf"│ {host}\s+│ \d+\s+│ serving │ 0\s+│ 2\s+│", res.stdout), res.stdout
    assert f"runs: completed {RUNS}" in res.stdout


@pytest.mark.slow
def test_kill_9_of_a_host_loses_exactly_its_runs_and_another_host_resumes(hosts):
    for host in ("a", "b", "c"):
        hosts.start(host, "--heartbeat-timeout", "3")
    long_b = int(hosts.mfm("a", "run", *TINY, *SLOW, "--set", "train.epochs=6",
                           "--host", "b").stdout.split()[-1])
    short_a = int(hosts.mfm("a", "run", *TINY, "--set", "train.epochs=1",
                            "--slot", "a:cpu0").stdout.split()[-1])
    short_c = int(hosts.mfm("b", "run", *TINY, "--set", "train.epochs=1",
                            "--host", "c").stdout.split()[-1])
    wait_for(lambda: (hosts.run(long_b).epoch or -1) >= 0, 150, "b's run to record an epoch")
    rec = hosts.run(long_b)
    assert rec.host == "b"
    hosts.procs["b"].kill()  # kill -9 of host b: its supervisor and its run
    os.killpg(rec.pid, signal.SIGKILL)
    hosts.procs["b"].wait(timeout=10)
    wait_for(lambda: hosts.run(long_b).status == "lost", 60, "b's run to be marked lost")
    lost = hosts.run(long_b)
    assert re.match(r"lost: host b's supervisor and the run stopped reporting at "
                    r"\d\d:\d\d:\d\d \(judged by [ac]\)", lost.error), lost.error
    for other in (short_a, short_c):
        wait_for(lambda o=other: hosts.run(o).status == "completed", 150, f"run {other}")
    assert [hosts.run(r).host for r in (short_a, short_c)] == ["a", "c"]
    # the pin to b is lifted on resume; a or c continues from the shared checkpoint
    res = hosts.mfm("a", "resume", str(long_b), "--host", "any")
    assert f"after epoch {lost.epoch + 1}/6" in res.stdout
    wait_for(lambda: hosts.run(long_b).status == "completed", 240, "the resume on a or c")
    final = hosts.run(long_b)
    assert final.host in ("a", "c") and final.attempt == 1 and final.epoch == 5
    assert final.checkpoint_dir == rec.checkpoint_dir
    with hosts.db() as db:
        assert [e for e, _ in repo.get_epoch_series(db, long_b)["acc"]] == list(range(6))
    assert {r.status for r in hosts.runs_of()} == {"completed"}


# -- bad input: one line, naming the URL without its password ---------------------------------

def _one_line(res) -> str:
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    return lines[0]


@pytest.mark.slow  # a real subprocess
def test_worker_refuses_a_database_it_cannot_use_in_one_line(tmp_path, cli_env):
    def worker(url: str):
        return subprocess.run([*mfm_exe(), "worker", "--idle-exit", "1"], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env=dict(cli_env, MFM_DB=url))

    line = _one_line(worker(f"postgresql+psycopg://mfm:s3cret@/mfm?host={tmp_path}/nowhere"))
    assert "s3cret" not in line and "mfm:***@" in line, line
    line = _one_line(worker("postgresql+nodriver://mfm:s3cret@db.lab/mfm"))
    assert "s3cret" not in line and "unknown database driver" in line, line


@pytest.mark.slow  # a real subprocess
@pytest.mark.postgres
def test_worker_refuses_a_wrong_password_and_a_missing_database(tmp_path, cli_env,
                                                                pg_server_url):
    from sqlalchemy import make_url

    auth = os.environ.get("MFM_TEST_PG_AUTH_URL")
    if not auth:
        pytest.skip("needs MFM_TEST_PG_AUTH_URL (.ci/pg-start.sh sets it)")

    def worker(url: str):
        return subprocess.run([*mfm_exe(), "worker", "--idle-exit", "1"], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env=dict(cli_env, MFM_DB=url))

    wrong = make_url(auth).set(password="not-it").render_as_string(hide_password=False)
    line = _one_line(worker(wrong))
    assert "not-it" not in line and "password" in line, line
    missing = make_url(pg_server_url).set(database="mfm_no_such_db").render_as_string(
        hide_password=False)
    line = _one_line(worker(missing))
    assert "mfm_no_such_db" in line, line


# -- the records drop in the middle of a run ----------------------------------------------------

@pytest.mark.postgres
def test_connection_drop_mid_run_training_goes_on_and_nothing_is_lost(pg_url, _pg_admin,
                                                                      tmp_path):
    import threading

    from sqlalchemy import make_url, text

    from mfm.config import config_to_dict, load_config
    from mfm.engine import Callbacks
    from mfm.runner.execute import execute_run

    name = make_url(pg_url).database

    def outage(seconds: float) -> None:
        with _pg_admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})
        time.sleep(seconds)
        with _pg_admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))

    class Count(Callbacks):
        def __init__(self):
            self.points: Counter = Counter()
            self.thread: threading.Thread | None = None

        def on_step(self, epoch, step, values):
            for k in values or {}:
                self.points[k] += 1

        def on_epoch(self, result):
            if result.epoch == 0:  # the server goes away for 3 s after the first epoch
                self.thread = threading.Thread(target=outage, args=(3.0,))
                self.thread.start()

    cfg = load_config(None, ["model.name=resnet_tiny", "train.epochs=4", "device=cpu",
                             "train.batch_size=64"])
    count = Count()
    with Database(pg_url) as db:
        run_id = repo.create_run(db, config=config_to_dict(cfg), epochs_total=4)
        outcome = execute_run(db, run_id, checkpoint_dir=tmp_path / "ckpt",
                              resume=False, extra_callbacks=(count,))
        count.thread.join()
        rec = repo.get_run(db, run_id)
        series = {k: len(repo.get_step_series(db, run_id, k)) for k in count.points}
        epochs = repo.get_epoch_series(db, run_id)
    assert outcome.status == "completed" and outcome.unrecorded is None, outcome
    assert rec.status == "completed" and rec.epoch == 3 and rec.summary
    assert series == dict(count.points)  # every step point reached the records
    assert [e for e, _ in epochs["acc"]] == [0, 1, 2, 3]
