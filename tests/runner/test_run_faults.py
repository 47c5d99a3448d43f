"""Faults of the disk and of the records during a run end it in a true state with one line:
a full disk under the checkpoints, a database write that fails once, a database that cannot
be written any more (the terminal says the run is unrecorded; a supervisor marks it lost), and
a resume whose checkpoint is gone (refused, records untouched)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import subprocess
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import mfm.atomic as atomic_module
import mfm.runner.execute as execute_module
import mfm.runner.sink as sink_module
from mfm.atomic import save_atomic
from mfm.cli.main import cli
from mfm.config import config_to_dict, load_config
from mfm.engine import Callbacks
from mfm.engine.checkpoint import load_checkpoint
from mfm.runner.execute import execute_run
from mfm.runner.sink import StoreSink
from mfm.runner.supervisor import Supervisor
from mfm.store import Database, StoreError, queue, repo

TINY = ["model.name=resnet_tiny", "train.epochs=2", "device=cpu", "train.batch_size=64"]
FULL = "database error in experiments.db: database or disk is full"


def new_run(db: Database, *overrides: str) -> int:
    cfg = load_config(None, [*TINY, *overrides])
    return repo.create_run(db, config=config_to_dict(cfg), epochs_total=cfg.train.epochs,
                           status="created")


# -- a full disk under the checkpoints ----------------------------------------------------------

def test_save_atomic_on_a_full_disk_names_it_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic({"epoch": 0, "w": torch.ones(3)}, path)
    real = os

    def write(fd, data):  # a disk that takes 100 bytes, then no more
        if real.fstat(fd).st_size >= 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real.write(fd, bytes(data[:100]))

    fake = types.SimpleNamespace(**{k: getattr(real, k) for k in dir(real)
                                    if not k.startswith("__")})
    fake.write = write
    monkeypatch.setattr(atomic_module, "os", fake)
    with pytest.raises(OSError) as caught:
        save_atomic({"epoch": 1, "w": torch.zeros(1000)}, path)
    e = caught.value
    assert e.errno == errno.ENOSPC and "No space left on device" in str(e)
    assert re.fullmatch(re.escape(str(tmp_path)) + r"/\.last\.pt\..*\.tmp", e.filename)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert load_checkpoint(path)["epoch"] == 0


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MiB tmpfs (needs root); unmounted afterwards."""
    where = tmp_path / "ckpt"
    where.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or res.returncode}); "
                    "needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


class FillDisk(Callbacks):
    """Once epoch ``epoch`` is recorded (its checkpoint is written), fill ``folder``'s disk."""

    def __init__(self, folder: Path, epoch: int = 0):
        self.folder, self.epoch = folder, epoch

    def on_epoch(self, result) -> None:
        if result.epoch != self.epoch:
            return
        fd = os.open(self.folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)


def test_full_disk_during_a_checkpoint_fails_the_run_with_one_line(tmp_path, small_tmpfs):
    with Database(str(tmp_path / "experiments.db")) as db:
        run_id = new_run(db)
        outcome = execute_run(db, run_id, checkpoint_dir=small_tmpfs, resume=False,
                              extra_callbacks=(FillDisk(small_tmpfs),))
        rec = repo.get_run(db, run_id)
    pattern = re.escape(f"No space left on device: {small_tmpfs}/.last.pt.") + r"\S+\.tmp"
    assert outcome.status == "failed" and re.fullmatch(pattern, outcome.reason), outcome
    assert rec.status == "failed" and rec.error == outcome.reason and rec.epoch == 0
    # the folder's owner marker (mfm.runfiles.OWNER), the last good epoch's checkpoints, the
    # filler: no partial temporary file left behind
    assert sorted(p.name for p in small_tmpfs.iterdir()) == [".mfm-records", "best.pt",
                                                              "filler", "last.pt"]
    assert load_checkpoint(small_tmpfs / "last.pt")["epoch"] == 0


# -- the records fail -----------------------------------------------------------------------

class StoreFailsOnce(Callbacks):
    def __init__(self):
        self.failed = False

    def on_epoch(self, result) -> None:
        if not self.failed:
            self.failed = True
            raise StoreError(FULL)


def test_a_record_write_that_fails_once_ends_the_run_failed_with_the_reason(tmp_path):
    with Database(str(tmp_path / "experiments.db")) as db:
        run_id = new_run(db)
        outcome = execute_run(db, run_id, checkpoint_dir=tmp_path / "runs" / "1",
                              resume=False, extra_callbacks=(StoreFailsOnce(),))
        rec = repo.get_run(db, run_id)
    line = f"could not write the records: {FULL}"
    assert (outcome.status, outcome.reason, outcome.unrecorded) == ("failed", line, None)
    assert (rec.status, rec.error) == ("failed", line)


@pytest.fixture
def broken_store(monkeypatch):
    """After the store sink records its first epoch, every write to the records fails."""
    state = {"broken": False}

    def failing(real):
        def write(*args, **kwargs):
            if state["broken"]:
                raise StoreError(FULL)
            return real(*args, **kwargs)
        return write

    for name in ("update_run", "log_epoch", "log_step_metrics"):
        monkeypatch.setattr(repo, name, failing(getattr(repo, name)))
    monkeypatch.setattr(queue, "transition", failing(queue.transition))
    real_on_epoch = StoreSink.on_epoch

    def on_epoch(self, result):
        real_on_epoch(self, result)
        state["broken"] = True

    monkeypatch.setattr(StoreSink, "on_epoch", on_epoch)
    monkeypatch.setattr(execute_module, "RETRY_PAUSE", 0.0)
    monkeypatch.setattr(execute_module, "END_FLUSH_SECONDS", 0.2)
    monkeypatch.setattr(sink_module, "GIVE_UP_SECONDS", 0.3)  # the sink's retries give up
    monkeypatch.setattr(sink_module, "BACKOFF_MIN", 0.05)
    return state


def test_records_that_cannot_be_written_any_more_say_so_and_a_supervisor_marks_it_lost(
        tmp_path, cli_env, broken_store):
    db_path = tmp_path / "experiments.db"
    args = ["run", "--headless", "--db", str(db_path)]
    for o in TINY:
        args += ["--set", o]
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 1, res.output
    said = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    # the sink retried its writes with backoff until it gave up, then said for how long
    expected = (re.escape(f"error: run 1 failed: could not write the records: {FULL}")
                + r" \(retried for \d+ s\)"
                + re.escape(f"; its end could not be recorded ({FULL}): the records may show it "
                            f"running until an `mfm worker` serving {db_path} on this host "
                            f"marks it lost"))
    assert len(said) == 1 and re.fullmatch(expected, said[0]), res.stderr
    broken_store["broken"] = False
    with Database(str(db_path)) as db:
        rec = repo.get_run(db, 1)
        assert rec.status == "running" and rec.slot is None and rec.epoch == 0
        # the process that ran it is gone (here: another start time for the same pid)
        repo.update_run(db, 1, proc_start="gone:0")
        sup = Supervisor(db, db_target=str(db_path), host=rec.host, slots=[],
                         runs_root=tmp_path / "runs", log=lambda _: None,
                         clock=lambda: rec.heartbeat_at + 61)
        sup.watch()
        rec = repo.get_run(db, 1)
    assert rec.status == "lost" and "mfm resume 1" in rec.error


# -- resume without a checkpoint ------------------------------------------------------------

def digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in (path, Path(f"{path}-wal")):
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_resume_without_its_checkpoint_is_refused_and_changes_nothing(tmp_path, cli_env):
    db_path = tmp_path / "experiments.db"
    ckpt = tmp_path / "runs" / "1"
    ckpt.mkdir(parents=True)
    with Database(str(db_path)) as db:
        run_id = new_run(db)
        repo.update_run(db, run_id, checkpoint_dir=str(ckpt))
        queue.transition(db, run_id, "running", allowed_from=("created",))
        repo.log_epoch(db, run_id, 0, {"acc": 0.5}, [0.5] * 10)
        queue.transition(db, run_id, "failed", error="boom")
    before = digest(db_path)
    res = CliRunner().invoke(cli, ["--db", str(db_path), "resume", str(run_id)])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines() == [
        f"error: ID: run 1 cannot resume: its checkpoint ({ckpt}/last.pt) is missing, and "
        f"training from scratch would overwrite its 1 recorded epoch(s); start a new run "
        f"instead"]
    assert digest(db_path) == before
    with Database(str(db_path)) as db:
        assert repo.get_run(db, run_id).status == "failed"


def test_resume_of_a_run_that_recorded_no_epoch_starts_again(tmp_path, cli_env, monkeypatch):
    import mfm.runner.launch as launch

    monkeypatch.setattr(launch, "serving", lambda *a: {"pid": 4242})  # a supervisor serves it
    db_path = tmp_path / "experiments.db"
    with Database(str(db_path)) as db:
        run_id = new_run(db)
        queue.transition(db, run_id, "failed", allowed_from=("created",), error="boom")
    res = CliRunner().invoke(cli, ["--db", str(db_path), "resume", str(run_id)])
    assert res.exit_code == 0, res.output
    assert "queued to start again from epoch 1/2" in res.output
    with Database(str(db_path)) as db:
        assert repo.get_run(db, run_id).status == "queued"
        # the run process then starts it from scratch instead of refusing (no checkpoint,
        # nothing recorded to overwrite)
        queue.transition(db, run_id, "starting", allowed_from=("queued",))
        outcome = execute_run(db, run_id, checkpoint_dir=tmp_path / "runs" / "1", resume=True)
        assert outcome.status == "completed", outcome


def test_run_process_refuses_to_resume_over_recorded_epochs_without_checkpoint(tmp_path):
    with Database(str(tmp_path / "experiments.db")) as db:
        run_id = new_run(db)
        queue.transition(db, run_id, "running", allowed_from=("created",))
        repo.log_epoch(db, run_id, 0, {"acc": 0.5}, [0.5] * 10)
        queue.transition(db, run_id, "failed", error="boom")
        queue.request_resume(db, run_id)
        queue.transition(db, run_id, "starting", allowed_from=("queued",))
        outcome = execute_run(db, run_id, checkpoint_dir=tmp_path / "gone", resume=True)
        rec = repo.get_run(db, run_id)
        series = repo.get_epoch_series(db, run_id)
    line = (f"cannot resume: checkpoint {tmp_path}/gone/last.pt does not exist (training from "
            f"scratch would overwrite the recorded epochs)")
    assert (outcome.status, outcome.reason) == ("failed", line)
    assert (rec.status, rec.error, rec.epoch) == ("failed", line, 0)
    assert series["acc"] == [(0, 0.5)]
