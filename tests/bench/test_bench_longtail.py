"""The benchmark profiles are sweep files run by the product's sweep runner: every profile
plans (all its cells validate), and the runner writes its Markdown table into a benchmarks file
from the records — end to end on a tiny slice of generated CIFAR-format data (the GPU
protocol's code path), including a second invocation that trains nothing."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_longtail", ROOT / "bench" / "longtail.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_longtail"] = mod
    spec.loader.exec_module(mod)
    return mod


def fake_cifar10(root: Path, per_class_train: int = 24, per_class_test: int = 5) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n_per_class):
        labels = np.repeat(np.arange(10), n_per_class)
        data = (rng.integers(0, 40, (labels.size, 3072)) + labels[:, None] * 20).astype(np.uint8)
        return {"data": data, "labels": labels.tolist()}

    for i in range(1, 6):
        with open(d / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_class_train // 5 + (1 if i == 1 else 0)), f)
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch(per_class_test), f)
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_runner_writes_the_sweep_table_and_a_rerun_trains_nothing(tmp_path, cli_env):
    bench = load_bench()
    fake_cifar10(tmp_path / "data")
    cifar = (ROOT / "bench" / "sweeps" / "cifar.toml").read_text()
    small = (cifar.replace('"data.name" = ["cifar10", "cifar100"]', '"data.name" = ["cifar10"]')
             .replace('"data.imbalance_factor" = [200, 100, 50]', '"data.imbalance_factor" = [5]')
             .replace('"method.name" = ["ce", "cb", "mwnet", "mfm"]',
                      '"method.name" = ["ce", "mfm"]'))
    assert small != cifar
    sweep_file = tmp_path / "cifar-small.toml"
    sweep_file.write_text(small)
    out = tmp_path / "BENCH.md"
    args = ["--profile", "cifar", "--file", str(sweep_file), "--db", str(tmp_path / "b.db"),
            "--runs-dir", str(tmp_path / "runs"), "--set", "device=cpu",
            "--set", f"data.root={tmp_path / 'data'}", "--set", "data.meta_per_class=2",
            "--set", "train.batch_size=20", "--set", "train.epochs=1",
            "--set", "model.name=resnet_tiny", "--out", str(out)]
    bench.main(args)
    text = out.read_text()
    assert "<!-- longtail:cifar:begin -->" in text
    assert "| cifar10 · imbalance_factor=5 · ce |" in text
    assert "| cifar10 · imbalance_factor=5 · mfm |" in text
    assert "Command: `python bench/longtail.py --profile cifar" in text
    from mfm.store import Database, repo
    with Database(str(tmp_path / "b.db")) as db:
        n_before = len(repo.list_runs(db))
    bench.main(args)
    with Database(str(tmp_path / "b.db")) as db:
        runs = repo.list_runs(db)
        assert len(runs) == n_before == 2 and all(r.status == "completed" for r in runs)
    assert out.read_text().count("<!-- longtail:cifar:begin -->") == 1


ARMS = {"quick": 7, "cpu": 21, "cpu-mfm": 9, "cifar": 24, "ablation": 36, "select": 9,
        "transfer": 4}


@pytest.mark.parametrize("profile", sorted(ARMS))
def test_every_profile_plans(profile, tmp_path):
    """A study must not fail half-way on a config that validation refuses: every cell of every
    profile validates (the ablation's skip_invalid leaves out what the rules refuse)."""
    from mfm.store import Database
    from mfm.sweeps.plan import plan_sweep
    from mfm.sweeps.spec import read_sweep

    with Database(str(tmp_path / "p.db")) as db:
        plan = plan_sweep(db, read_sweep(ROOT / "bench" / "sweeps" / f"{profile}.toml"),
                          code_version=None)
    assert len({c.cell.arm for c in plan.cells}) == ARMS[profile]
    assert all(c.action == "new" for c in plan.cells)
