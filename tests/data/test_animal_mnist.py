"""``data.name=animal-mnist``: the real files from the installed package (skipped, saying how
to install it, where it is not), its fixed test split, its long tail, a refused hostile
pickle, the missing-package error and a one-epoch run."""

from __future__ import annotations

import gzip
import math
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny import fit_tiny

from mfm.config import ConfigError, DataConfig
from mfm.data.loader import FLIP_SAFE, augmentation_for
from mfm.data.sources import DataError, load_source, preview_counts
from mfm.data.sources import animal_mnist as am

FOLDER = am.package_folder()
needs_package = pytest.mark.skipif(
    FOLDER is None or not (FOLDER / am.DATA_FILE).is_file(),
    reason=f"the animal-mnist package is not installed ({am.INSTALL}; .ci/run installs it)")


def cfg(**kw) -> DataConfig:
    return DataConfig(name="animal-mnist", **kw)


# ---------------------------------------------------------------- the real data

@needs_package
def test_real_data_loads():
    s = load_source(cfg(), download=False)
    assert s.classes == am.ANIMAL_CLASSES and s.num_classes == 10
    assert s.classes[0] == "Bear" and s.classes[9] == "Zebra"
    assert (s.in_channels, s.image_size) == (1, 28)
    assert s.train_images.shape == (8000, 1, 28, 28) and s.train_images.dtype == np.uint8
    assert s.test_images.shape == (2000, 1, 28, 28) and s.test_images.dtype == np.uint8
    assert np.bincount(s.train_labels).tolist() == [800] * 10
    assert np.bincount(s.test_labels).tolist() == [200] * 10
    # The test images have no copy among the training images (the file holds 284 copies).
    train = {im.tobytes() for im in s.train_images}
    assert not any(im.tobytes() in train for im in s.test_images)
    assert len(train) < 8000
    # The same split every time and for every data.seed (a fixed test set, as MNIST's).
    again = load_source(cfg(seed=3), download=False)
    assert np.array_equal(again.test_images, s.test_images)
    assert np.array_equal(again.train_labels, s.train_labels)
    # Found without importing the package (its dataset_Loader imports TensorFlow).
    assert "animal_mnist" not in sys.modules and "tensorflow" not in sys.modules


@needs_package
def test_long_tailed_split_counts():
    got = preview_counts(cfg(imbalance_factor=100, profile="exp"))
    # n_max = 800 - 10 meta images; class c keeps floor(790 * 100 ** (-c / 9)).
    assert got["train"] == [790, 473, 283, 170, 102, 61, 36, 21, 13, 7]
    assert got["train"] == [math.floor(790 * 100 ** (-c / 9)) for c in range(10)]
    assert got["meta"] == [10] * 10 and got["test"] == [200] * 10
    assert got["classes"][0] == "Bear"
    # labels only agrees with a full load
    full = load_source(cfg(), download=False)
    labels_only = am.load_animal_mnist(cfg(), images=False, download=False)
    assert labels_only.train_images is None
    assert np.array_equal(labels_only.train_labels, full.train_labels)


@needs_package
def test_a_copy_in_data_root_is_read(tmp_path):
    shutil.copytree(FOLDER, tmp_path / "Animal_MNIST")
    s = load_source(cfg(root=str(tmp_path)), download=False)
    assert np.array_equal(s.test_images, load_source(cfg(), download=False).test_images)


def test_animals_are_flipped():
    assert "animal-mnist" in FLIP_SAFE
    assert augmentation_for(cfg(), 28) == (3, True)


# ---------------------------------------------------------------- files that are wrong

class _OpensFile:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _write_gz(path: Path, obj: object) -> None:
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f)


@pytest.mark.parametrize("victim", [am.LABEL_FILE, am.DATA_FILE])
def test_hostile_pickle_is_refused(tmp_path, victim):
    root, marker = tmp_path / "root", tmp_path / "pwned"
    root.mkdir()
    _write_gz(root / am.LABEL_FILE, np.repeat(np.arange(10), 3))
    _write_gz(root / am.DATA_FILE, np.zeros((30, 28, 28), np.uint8))
    _write_gz(root / victim, [_OpensFile(marker)])
    with pytest.raises(DataError) as e:
        load_source(cfg(root=str(root)), download=False)
    msg = str(e.value)
    assert "\n" not in msg and str(root / victim) in msg
    assert "io.open" in msg and "refusing to unpickle" in msg and "animal-mnist" in msg
    assert not marker.exists()
    # the control: an unrestricted load would have run it
    with gzip.open(root / victim, "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_wrong_content_is_one_line(tmp_path):
    _write_gz(tmp_path / am.LABEL_FILE, np.repeat(np.arange(10), 3))
    _write_gz(tmp_path / am.DATA_FILE, {"data": np.zeros((30, 28, 28), np.uint8)})
    with pytest.raises(DataError, match="expected one numpy array, found a dict"):
        load_source(cfg(root=str(tmp_path)), download=False)
    _write_gz(tmp_path / am.DATA_FILE, np.zeros((30, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 images \(30, 28, 28\)"):
        load_source(cfg(root=str(tmp_path)), download=False)
    (tmp_path / am.LABEL_FILE).write_bytes(gzip.compress(pickle.dumps(np.arange(30)))[:40])
    with pytest.raises(DataError, match="truncated"):
        load_source(cfg(root=str(tmp_path)), download=False)


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(am, "package_folder", lambda: None)
    for kw in ({}, {"root": str(tmp_path)}):
        with pytest.raises(ConfigError) as e:
            load_source(cfg(**kw), download=False)
        msg = str(e.value)
        assert msg.startswith("data.name: animal-mnist") and "\n" not in msg
        assert f"pip install --no-deps {am.PIN}" in msg


# ---------------------------------------------------------------- a real run

@needs_package
def test_one_epoch_trains():
    rec = fit_tiny(["data.name=animal-mnist", "data.imbalance_factor=100", "method.name=ce",
                    "train.epochs=1"])
    assert rec.info is not None and rec.summary is not None
    assert len(rec.epochs) == 1
    result = rec.epochs[0]
    assert len(result.class_acc) == 10
    assert math.isfinite(result.scalars["train_loss"]) and 0.0 <= result.scalars["acc"] <= 1.0
