"""Shared helpers for tests that drive real processes (importable: pytest's pythonpath
includes tests/)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from mfm.store import Database, queue

TINY = ["--set", "model.name=resnet_tiny", "--set", "device=cpu"]


def mfm_exe() -> list[str]:
    exe = Path(sys.executable).with_name("mfm")
    return [str(exe)] if exe.exists() else [shutil.which("mfm") or "mfm"]


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


class Env:
    def __init__(self, tmp_path: Path):
        self.tmp = tmp_path
        self.db_path = tmp_path / "experiments.db"
        self.runs = tmp_path / "runs"
        self.env = dict(os.environ, MFM_DB=str(self.db_path), MFM_RUNS_DIR=str(self.runs))
        self.procs: list[subprocess.Popen] = []

    def mfm(self, *args: str, timeout: float = 120, check: bool = False):
        res = subprocess.run([*mfm_exe(), *args], capture_output=True, text=True,
                             timeout=timeout, env=self.env, cwd=self.tmp)
        if check:
            assert res.returncode == 0, res.stderr[-2000:]
        return res

    def start_worker(self, *args: str) -> subprocess.Popen:
        log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")
        p = subprocess.Popen([*mfm_exe(), "worker", "--poll", "0.2", *args], stdout=log,
                             stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp,
                             start_new_session=True)
        self.procs.append(p)
        wait_for(lambda: self.holder(), 30, "the supervisor to take its lock")
        return p

    def holder(self):
        from mfm.runner.launch import serving
        return serving(str(self.db_path), self.runs)

    def enqueue(self, *sets: str, epochs: int = 3) -> int:
        res = self.mfm("run", *TINY, "--set", f"train.epochs={epochs}", *sets, check=True)
        return int(res.stdout.strip().splitlines()[-1])

    def run(self, run_id: int):
        with Database(str(self.db_path)) as db:
            from mfm.store import repo
            return repo.get_run(db, run_id)

    def status(self, run_id: int) -> str:
        return self.run(run_id).status

    def cleanup(self) -> None:
        holder = self.holder()
        pids = [p.pid for p in self.procs] + ([holder["pid"]] if holder and
                                               holder.get("pid") else [])
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.db_path.exists():
            with Database(str(self.db_path)) as db:
                for rec in queue.active_runs(db):
                    if rec.pid:
                        try:
                            os.killpg(rec.pid, signal.SIGKILL)
                        except (ProcessLookupError, PermissionError):
                            pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def fingerprint(db_file: Path) -> tuple[str | None, str | None]:
    """A SQLite file's bytes and any WAL frames not yet checkpointed into it: equal before and
    after a command means the command changed nothing in the records."""
    import hashlib

    def digest(p: Path) -> str | None:
        if not p.exists() or p.is_dir() or p.stat().st_size == 0:
            return None
        return hashlib.sha256(p.read_bytes()).hexdigest()

    return digest(db_file), digest(db_file.with_name(db_file.name + "-wal"))
