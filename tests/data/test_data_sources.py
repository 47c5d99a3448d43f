"""Dataset sources: digits, IDX, CIFAR pickles, imagefolder listing, errors, torch-freedom."""

from __future__ import annotations

import gzip
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfm.config import ConfigError, DataConfig
from mfm.data.sources import (
    DEBIAN_FASHION_MNIST,
    balanced_holdout,
    load_source,
    preview_counts,
    read_idx,
)

REPO = Path(__file__).resolve().parents[2]


def write_idx(path: Path, arr: np.ndarray) -> Path:
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    data = header + arr.tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


# ---------------------------------------------------------------- digits

def test_digits_source():
    s = load_source(DataConfig(name="digits"))
    assert s.train_images.shape == (1797 - 500, 1, 8, 8)
    assert s.test_images.shape == (500, 1, 8, 8)
    assert s.train_images.dtype == np.uint8 and s.train_images.max() == 255
    assert s.train_labels.dtype == np.int64
    assert np.bincount(s.test_labels, minlength=10).tolist() == [50] * 10
    assert (s.in_channels, s.image_size, s.num_classes) == (1, 8, 10)
    assert s.in_memory and s.train_paths is None


def test_digits_holdout_balanced_disjoint_seeded():
    labels = np.random.default_rng(0).integers(0, 10, 500)
    rest, held = balanced_holdout(labels, 10, 7, np.random.default_rng([0, 1]))
    assert np.intersect1d(rest, held).size == 0
    assert np.array_equal(np.sort(np.concatenate([rest, held])), np.arange(500))
    assert np.bincount(labels[held], minlength=10).tolist() == [7] * 10
    _, again = balanced_holdout(labels, 10, 7, np.random.default_rng([0, 1]))
    _, other = balanced_holdout(labels, 10, 7, np.random.default_rng([1, 1]))
    assert np.array_equal(held, again) and not np.array_equal(held, other)


def test_digits_test_split_depends_on_data_seed():
    a = load_source(DataConfig(name="digits", seed=0))
    b = load_source(DataConfig(name="digits", seed=1))
    assert not np.array_equal(a.test_images, b.test_images)


def test_digits_test_per_class_too_large():
    with pytest.raises(ConfigError) as e:
        load_source(DataConfig(name="digits", test_per_class=174))
    assert e.value.key == "data.test_per_class" and "must be <= 173" in str(e.value)


# ---------------------------------------------------------------- IDX

@pytest.mark.parametrize("name", ["x-idx3-ubyte", "x-idx3-ubyte.gz"])
def test_read_idx_roundtrip(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    got = read_idx(write_idx(tmp_path / name, arr))
    assert got.dtype == np.uint8 and np.array_equal(got, arr)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / ("l" + name), labels)), labels)


def test_read_idx_bad_files(tmp_path):
    bad = tmp_path / "bad-idx1-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ConfigError) as e:
        read_idx(bad)
    assert e.value.key == "data.root" and str(bad) in str(e.value) and "magic" in str(e.value)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02")
    with pytest.raises(ConfigError, match="corrupt"):
        read_idx(short)
    notgz = tmp_path / "x-idx1-ubyte.gz"
    notgz.write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="cannot read"):
        read_idx(notgz)


def _write_mnist(root: Path, gz: bool, per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, n in (("train", 10 * per_class), ("t10k", 10 * 2)):
        labels = np.tile(np.arange(10), n // 10).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_root(tmp_path, gz):
    _write_mnist(tmp_path, gz)
    s = load_source(DataConfig(name="mnist", root=str(tmp_path)), download=False)
    assert s.train_images.shape == (30, 1, 28, 28) and s.test_images.shape == (20, 1, 28, 28)
    assert s.classes == tuple("0123456789")
    assert np.bincount(s.train_labels).tolist() == [3] * 10


def test_idx_in_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    _write_mnist(raw, gz=False)
    s = load_source(DataConfig(name="fashion-mnist", root=str(tmp_path)), download=False)
    assert s.classes[0] == "T-shirt/top" and s.train_images.shape[0] == 30


@pytest.mark.slow
def test_fashion_mnist_debian_files():
    if not (Path(DEBIAN_FASHION_MNIST) / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST IDX files absent from {DEBIAN_FASHION_MNIST} "
                    "(apt-get install dataset-fashion-mnist)")
    s = load_source(DataConfig(name="fashion-mnist"), download=False)
    assert s.train_images.shape == (60000, 1, 28, 28)
    assert s.test_images.shape == (10000, 1, 28, 28)
    assert s.num_classes == 10 and s.train_images.dtype == np.uint8
    assert np.bincount(s.train_labels).tolist() == [6000] * 10


# ---------------------------------------------------------------- CIFAR pickles

def _write_cifar(root: Path, name: str) -> None:
    rng = np.random.default_rng(0)
    if name == "cifar10":
        d = root / "cifar-10-batches-py"
        d.mkdir(parents=True)
        for i in range(1, 6):
            batch = {"data": rng.integers(0, 256, (20, 3072)).astype(np.uint8),
                     "labels": list(np.tile(np.arange(10), 2))}
            (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
        (d / "test_batch").write_bytes(pickle.dumps(
            {"data": rng.integers(0, 256, (10, 3072)).astype(np.uint8),
             "labels": list(range(10))}))
        (d / "batches.meta").write_bytes(pickle.dumps(
            {"label_names": [f"c{i}" for i in range(10)]}))
    else:
        d = root / "cifar-100-python"
        d.mkdir(parents=True)
        for split, n in (("train", 300), ("test", 100)):
            (d / split).write_bytes(pickle.dumps(
                {"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                 "fine_labels": list(np.tile(np.arange(100), n // 100)),
                 "coarse_labels": [0] * n}))
        (d / "meta").write_bytes(pickle.dumps(
            {"fine_label_names": [f"f{i}" for i in range(100)]}))


def test_cifar10_pickles(tmp_path):
    _write_cifar(tmp_path, "cifar10")
    s = load_source(DataConfig(name="cifar10", root=str(tmp_path)), download=False)
    assert s.train_images.shape == (100, 3, 32, 32) and s.test_images.shape == (10, 3, 32, 32)
    assert s.classes[3] == "c3" and np.bincount(s.train_labels).tolist() == [10] * 10


def test_cifar100_pickles_fine_labels(tmp_path):
    _write_cifar(tmp_path, "cifar100")
    s = load_source(DataConfig(name="cifar100", root=str(tmp_path)), download=False)
    assert s.num_classes == 100 and s.train_images.shape == (300, 3, 32, 32)
    assert np.bincount(s.train_labels).tolist() == [3] * 100


# ---------------------------------------------------------------- imagefolder listing

def _touch_folder(root: Path, layout: dict[str, dict[str, int]]) -> None:
    for split, classes in layout.items():
        for c, n in classes.items():
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (root / split / c / f"{i}.png").write_bytes(b"")
            (root / split / c / "notes.txt").write_text("ignored")


def test_imagefolder_listing(tmp_path):
    _touch_folder(tmp_path, {"train": {"b": 3, "a": 2}, "test": {"a": 1, "b": 1}})
    s = load_source(DataConfig(name="imagefolder", root=str(tmp_path), image_size=16))
    assert s.classes == ("a", "b") and s.train_labels.tolist() == [0, 0, 1, 1, 1]
    assert len(s.train_paths) == 5 and all(p.endswith(".png") for p in s.train_paths)
    assert (s.in_channels, s.image_size, s.in_memory) == (3, 16, False)


def test_imagefolder_class_mismatch(tmp_path):
    _touch_folder(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "c": 1}})
    with pytest.raises(ConfigError) as e:
        load_source(DataConfig(name="imagefolder", root=str(tmp_path)))
    assert e.value.key == "data.root" and "'b'" in str(e.value) and "'c'" in str(e.value)


def test_imagefolder_without_train(tmp_path):
    with pytest.raises(ConfigError, match="no train/ folder"):
        load_source(DataConfig(name="imagefolder", root=str(tmp_path)))


# ---------------------------------------------------------------- missing data

def _one_line_error(cfg: DataConfig) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_source(cfg, download=False)
    assert e.value.key == "data.root" and "\n" not in str(e.value)
    return e.value


def test_missing_root_does_not_exist(tmp_path):
    err = _one_line_error(DataConfig(name="cifar10", root=str(tmp_path / "nope")))
    assert "does not exist" in str(err)


def test_missing_files_say_how_to_get_them(tmp_path):
    err = _one_line_error(DataConfig(name="fashion-mnist", root=str(tmp_path)))
    assert str(tmp_path) in str(err) and "apt-get install dataset-fashion-mnist" in str(err)
    assert "train-images-idx3-ubyte" in str(err)
    err = _one_line_error(DataConfig(name="cifar100", root=str(tmp_path)))
    assert "cifar-100-python" in str(err) and "network" in str(err)
    err = _one_line_error(DataConfig(name="mnist", root=str(tmp_path)))
    assert "IDX" in str(err)


# ---------------------------------------------------------------- preview and import rules

def test_preview_counts_digits():
    p = preview_counts(DataConfig(name="digits", imbalance_factor=10))
    assert p["classes"] == list("0123456789")
    assert p["train"] == [114, 88, 68, 52, 40, 31, 24, 19, 14, 11]  # n_max = 174 - 50 - 10
    assert p["meta"] == [10] * 10 and p["test"] == [50] * 10
    assert len(p["split_hash"]) == 64


def test_preview_counts_mnist_labels_only(tmp_path):
    _write_mnist(tmp_path, gz=True, per_class=6)
    p = preview_counts(DataConfig(name="mnist", root=str(tmp_path), meta_per_class=1,
                                  imbalance_factor=5))
    assert p["train"] == [5, 4, 3, 2, 2, 2, 1, 1, 1, 1] and p["test"] == [2] * 10


@pytest.mark.slow  # a real subprocess
def test_sources_do_not_import_torch():
    code = ("import sys, mfm.data, mfm.data.sources, mfm.data.longtail\n"
            "from mfm.config import DataConfig\n"
            "mfm.data.preview_counts(DataConfig())\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'torchvision' not in sys.modules\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
