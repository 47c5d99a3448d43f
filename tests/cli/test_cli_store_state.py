"""One reading of a store's state for every command: ``mfm db current`` and ``mfm db
upgrade`` say what ``mfm runs`` says about a damaged or newer file (one line, exit 2), and a
user who may only read the records can still list them (real processes; the read-only user is
``nobody``, where this machine lets the tests switch to it)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from proc_helpers import fingerprint, mfm_exe

from mfm.store import Database


def run(args: list[str], db: Path, **kw) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MFM_DB"}
    return subprocess.run([*mfm_exe(), *args, "--db", str(db)], capture_output=True,
                          text=True, timeout=120, env=env, **kw)


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.mark.slow  # real subprocesses
@pytest.mark.parametrize("damage", ["newer schema_info", "alembic row deleted"])
def test_db_current_and_upgrade_agree_with_every_other_command(tmp_path, damage):
    db = tmp_path / "experiments.db"
    with Database(str(db)):
        pass
    with sqlite3.connect(db) as conn:
        if damage == "newer schema_info":
            conn.execute("UPDATE schema_info SET version = 99")
        else:
            conn.execute("DELETE FROM alembic_version")
    with sqlite3.connect(db) as conn:  # every frame in the file: the bytes are the records
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = fingerprint(db)
    said = set()
    for args in (["runs"], ["db", "current"], ["db", "upgrade"], ["sweep", "list"]):
        res = run(args, db)
        assert res.returncode == 2, (args, res.stderr)
        said.add(one_line(res))
    assert len(said) == 1, said  # the same line from each
    assert fingerprint(db) == before


def _nobody_can_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to the user nobody"
    if shutil.which("setpriv") is None:
        return "needs setpriv (util-linux)"
    return None


@pytest.mark.slow
def test_a_user_who_may_only_read_the_records_can_list_them():
    why = _nobody_can_run()
    if why:
        pytest.skip(why)
    folder = Path(tempfile.mkdtemp(prefix="mfm-ro-"))
    try:
        db = folder / "experiments.db"
        res = run(["run", "--executor", "slurm", "--name", "kept"], db)  # queued, not started
        assert res.returncode == 0, res.stderr
        folder.chmod(0o555)
        db.chmod(0o644)
        before = fingerprint(db)
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        env = {k: v for k, v in os.environ.items() if k != "MFM_DB"}
        listed = subprocess.run([*as_nobody, *mfm_exe(), "runs", "--db", str(db)],
                                capture_output=True, text=True, timeout=120, env=env,
                                cwd="/")
        assert listed.returncode == 0, listed.stderr
        assert "kept" in listed.stdout
        noted = subprocess.run([*as_nobody, *mfm_exe(), "note", "1", "mine", "--db", str(db)],
                               capture_output=True, text=True, timeout=120, env=env, cwd="/")
        line = one_line(noted)
        assert "belongs to user root" in line and "chmod" not in line, line
        assert fingerprint(db) == before
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
