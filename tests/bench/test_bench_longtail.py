"""The study runner end to end on a tiny slice of generated CIFAR-format data (the GPU
protocol's code path), including resuming an interrupted study."""

from __future__ import annotations

import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_longtail", ROOT / "bench" / "longtail.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_longtail"] = mod  # dataclasses look their module up there
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


def test_cifar_profile_smoke_and_resume(tmp_path, cli_env):
    bench = load_bench()
    fake_cifar10(tmp_path / "data")
    bench.PROFILES["cifar"] = bench.Profile(
        specs=bench.PROFILES["cifar"].specs[:1], model="resnet_tiny", epochs=1, seeds=1,
        methods=("ce", "mfm"), common=bench.PROFILES["cifar"].common,
        note=bench.PROFILES["cifar"].note)
    out = tmp_path / "BENCH.md"
    args = ["--profile", "cifar", "--db", str(tmp_path / "b.db"), "--runs-dir",
            str(tmp_path / "runs"), "--device", "cpu", "--data-root", str(tmp_path / "data"),
            "--set", "data.meta_per_class=2", "--set", "data.imbalance_factor=5",
            "--set", "train.batch_size=20", "--out", str(out)]
    bench.main(args)
    text = out.read_text()
    assert "<!-- longtail:cifar:begin -->" in text and "cifar10-LT IF200" in text
    assert "| cifar10-LT IF200 | ce |" in text and "| cifar10-LT IF200 | mfm |" in text
    assert "Command: `python bench/longtail.py --profile cifar" in text
    # a second invocation finds every run completed and trains nothing: same table
    from mfm.store import Database, repo
    with Database(str(tmp_path / "b.db")) as db:
        n_before = len(repo.list_runs(db))
        first = repo.list_runs(db)[0]
        repo.update_run(db, first.id, status="cancelled")  # as if interrupted
    bench.main(args)
    with Database(str(tmp_path / "b.db")) as db:
        runs = repo.list_runs(db)
        assert len(runs) == n_before and all(r.status == "completed" for r in runs)
    assert out.read_text().count("<!-- longtail:cifar:begin -->") == 1


def test_every_profile_arm_is_a_valid_config_on_its_specs():
    """A study must not fail half-way on a config that validation refuses: every arm of every
    profile (the ablation's generated ones included) loads on each dataset spec it runs on."""
    from mfm.config import load_config

    bench = load_bench()
    checked = 0
    for name, prof in bench.PROFILES.items():
        for arm in bench.profile_arms(prof, None):
            for spec in prof.specs:
                if arm.specs and spec.name not in arm.specs:
                    continue
                overrides = [*spec.overrides, *prof.common, *arm.overrides,
                             f"model.name={prof.model}", f"train.epochs={prof.epochs}"]
                cfg = load_config(None, overrides)
                assert cfg.method.name in bench.ALL_METHODS, (name, arm.label)
                checked += 1
    ablation = bench.profile_arms(bench.PROFILES["ablation"], None)
    # 26 accepted combinations + 5 one-at-a-time changes + 3 shortcut probes + 2 references
    assert len(ablation) == 36
    assert checked > 60
