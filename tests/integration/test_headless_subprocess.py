"""A real ``mfm run --headless`` process on digits, checked through the records."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from mfm.store import Database, repo


def mfm_command() -> list[str]:
    exe = Path(sys.executable).with_name("mfm")
    return [str(exe)] if exe.exists() else [shutil.which("mfm") or "mfm"]


def test_headless_subprocess_completes_with_per_class_vectors(tmp_path, cli_env):
    db_path = tmp_path / "experiments.db"
    proc = subprocess.run(
        [*mfm_command(), "run", "--headless", "--db", str(db_path),
         "--set", "model.name=resnet_tiny", "--set", "train.epochs=2", "--set", "device=cpu"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=cli_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "final" in proc.stdout and "best" in proc.stdout
    with Database(str(db_path)) as db:
        (run,) = repo.list_runs(db)
        assert run.status == "completed"
        assert run.pid is not None and run.pid > 0 and run.host
        vectors = repo.get_all_class_accuracy(db, run.id)
        assert sorted(vectors) == [0, 1]
        assert all(len(v) == 10 and all(0.0 <= a <= 1.0 for a in v) for v in vectors.values())
        series = repo.get_epoch_series(db, run.id)
        assert [e for e, _ in series["acc"]] == [0, 1]
        assert run.class_counts["meta"] == [10] * 10
