"""A real ``mfm run --headless`` process on digits, checked through the records."""

from __future__ import annotations

import subprocess

import pytest
from proc_helpers import mfm_exe, wait_for

from mfm.store import Database, repo

# real subprocesses / processes racing on one database: the CI run, not the inner loop
pytestmark = pytest.mark.slow


def test_headless_subprocess_completes_with_per_class_vectors(tmp_path, cli_env):
    db_path = tmp_path / "experiments.db"
    proc = subprocess.run(
        [*mfm_exe(), "run", "--headless", "--db", str(db_path),
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


def test_ctrl_c_marks_the_run_cancelled(tmp_path, cli_env):
    import signal
    db_path = tmp_path / "experiments.db"
    proc = subprocess.Popen(
        [*mfm_exe(), "run", "--headless", "--db", str(db_path), "--set", "device=cpu",
         "--set", "model.name=resnet_tiny", "--set", "train.epochs=500",
         # MFM's exact step: a run long enough to be interrupted (the cheaper default finishes
         # 500 epochs in seconds)
         "--set", "mfm.meta_interval=1", "--set", "mfm.virtual_params=all"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=cli_env,
        # a terminal's Ctrl-C: SIGINT's default action, whoever started the tests (a shell's
        # background job starts with SIGINT ignored, and an ignored signal stays ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        def first_epoch_done():
            if not db_path.exists():
                return False
            with Database(str(db_path)) as db:
                runs = repo.list_runs(db)
                return bool(runs) and runs[0].epoch is not None
        wait_for(first_epoch_done, 120, "the first epoch to be recorded")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-1500:]
    with Database(str(db_path)) as db:
        (run,) = repo.list_runs(db)
        assert run.status == "cancelled" and run.finished_at is not None


def test_a_failure_is_recorded_with_its_traceback(tmp_path, cli_env):
    from PIL import Image
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(4):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / f"{i}.png")
    (root / "train" / "b" / "3.png").write_bytes(b"not a png at all")  # breaks decoding
    db_path = tmp_path / "experiments.db"
    proc = subprocess.run(
        [*mfm_exe(), "run", "--headless", "--db", str(db_path), "--set", "device=cpu",
         "--set", "data.name=imagefolder", "--set", f"data.root={root}",
         "--set", "data.meta_per_class=1", "--set", "data.imbalance_factor=1",
         "--set", "data.num_workers=0", "--set", "model.name=resnet_tiny",
         "--set", "train.epochs=1"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=cli_env)
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert "failed" in proc.stderr and "mfm show" in proc.stderr
    with Database(str(db_path)) as db:
        (run,) = repo.list_runs(db)
        assert run.status == "failed" and "Traceback" in run.error
