"""``animal-mnist``: 10,000 animal silhouettes, 28x28 grayscale, 10 balanced classes (1,000
each), 1x28x28, from the PyPI package ``animal-mnist`` (:data:`PIN`).

The package holds two gzipped pickles in ``animal_mnist/data/Animal_MNIST/``: :data:`DATA_FILE`
(one uint8 ndarray (10000, 28, 28)) and :data:`LABEL_FILE` (one int64 ndarray (10000,), labels
0-9, sorted by class). Class names follow the package's description (alphabetical); checked by
eye against the images: 0 is a bear, 9 a zebra. Both files are read with the restricted
unpickler of :mod:`.safe_pickle` (numpy arrays only), never with ``pickle.load``.

The package is located with ``importlib.util.find_spec`` and never imported: its
``dataset_Loader`` imports TensorFlow, which its metadata also declares, so it is installed
without dependencies (:data:`INSTALL`). ``data.root``, when set, is looked in first (the two
files in it or in its ``Animal_MNIST/`` sub-folder).

No train/test split ships, so the test set is :data:`TEST_PER_CLASS` images per class (the 20%
the package's own benchmark holds out), fixed: the same for every ``data.seed``, as MNIST's
t10k is, drawn with ``default_rng(TEST_SEED)`` by :func:`balanced_holdout`. It is drawn only
among images that have no exact copy in the file: 284 of the 10,000 are byte-identical copies
of another image of the same class (188 of them birds), and a test image whose twin is a
training image would be a test image seen in training. The other 8,000 (copies included) are
the training set before the long-tail split.

``images=False`` reads the labels file only, except on the first read of a given copy of the
files: the held-out indices depend on the images (the copies), so they are computed once and
kept by the files' identity (path, mtime, size).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mfm.config import ConfigError, DataConfig
from mfm.data.sources.base import DataError, Source, check_labels, shown_path, user_root
from mfm.data.sources.digits import balanced_holdout
from mfm.data.sources.safe_pickle import read_numpy_pickle

__all__ = ["ANIMAL_CLASSES", "DATA_FILE", "INSTALL", "LABEL_FILE", "NAMES", "PIN",
           "TEST_PER_CLASS", "TEST_SEED", "load_animal_mnist", "package_folder",
           "holdout_indices"]

NAMES = ("animal-mnist",)
PIN = "animal-mnist==0.4"
INSTALL = f"pip install --no-deps {PIN}"
PACKAGE = "animal_mnist"
SUBDIR = "Animal_MNIST"
DATA_FILE = "animal_data_version_3.gz"
LABEL_FILE = "animal_label_version_3.gz"
ANIMAL_CLASSES = ("Bear", "Bird", "Cat", "Cow", "Dog", "Elephant", "Giraffe", "Horse", "Sheep",
                  "Zebra")
TEST_PER_CLASS = 200
TEST_SEED = 0
_REINSTALL = f"reinstall it: pip install --force-reinstall --no-deps {PIN}"


# ---------------------------------------------------------------- finding the files

def package_folder() -> Path | None:
    """``animal_mnist/data/Animal_MNIST`` of the installed package, or None when it is not
    installed. Finds the package without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data" / SUBDIR


def _files_in(folder: Path) -> tuple[Path, Path] | None:
    for d in (folder, folder / SUBDIR):
        data, labels = d / DATA_FILE, d / LABEL_FILE
        if data.is_file() and labels.is_file():
            return data, labels
    return None


def _find_files(cfg: DataConfig) -> tuple[Path, Path]:
    """(data file, label file): in data.root when set, else in the installed package."""
    root = user_root(cfg)
    package = package_folder()
    for folder in (root, package):
        found = _files_in(folder) if folder is not None else None
        if found is not None:
            return found
    if package is None:
        where = f"no {DATA_FILE} in {shown_path(root)}, and " if root is not None else ""
        raise ConfigError("data.name", f"animal-mnist: {where}the animal-mnist package is not "
                                       f"installed: {INSTALL} (without its TensorFlow "
                                       "dependency, which reading the data does not need)")
    places = " or ".join(str(p) for p in ((root,) if root is not None else ()) + (package,))
    raise ConfigError("data.root", f"animal-mnist: no {DATA_FILE} and {LABEL_FILE} in "
                                   f"{places}; {_REINSTALL}")


# ---------------------------------------------------------------- reading them

def _read(path: Path) -> np.ndarray:
    obj = read_numpy_pickle(path, noun="an animal-mnist file", fix=_REINSTALL, gzipped=True)
    if not isinstance(obj, np.ndarray):
        raise DataError(f"{shown_path(path)}: expected one numpy array, found a "
                        f"{type(obj).__name__}")
    return obj


def _read_images(path: Path, n: int) -> np.ndarray:
    x = _read(path)
    if x.dtype != np.uint8 or x.shape != (n, 28, 28):
        raise DataError(f"{shown_path(path)}: expected uint8 images ({n}, 28, 28) (one per "
                        f"label), got {x.dtype} {x.shape}")
    return x


def holdout_indices(images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices (sorted int64): TEST_PER_CLASS per class held out with
    ``default_rng(TEST_SEED)``, only among images with no byte-identical copy in ``images``."""
    flat = np.ascontiguousarray(images.reshape(images.shape[0], -1))
    keys = flat.view(np.dtype((np.void, flat.shape[1]))).ravel()
    _, inverse, copies = np.unique(keys, return_inverse=True, return_counts=True)
    single = copies[inverse.ravel()] == 1
    eligible = np.where(single, labels, -1)  # a copied image is never held out
    short = [c for c in range(len(ANIMAL_CLASSES))
             if np.count_nonzero(eligible == c) < TEST_PER_CLASS]
    if short:
        raise DataError(f"animal-mnist: class {ANIMAL_CLASSES[short[0]]} has fewer than "
                        f"{TEST_PER_CLASS} images without a copy, too few for its test set")
    return balanced_holdout(eligible, len(ANIMAL_CLASSES), TEST_PER_CLASS,
                            np.random.default_rng(TEST_SEED))


# holdout_indices results by the files' identity: a labels-only read (the TUI's preview) does
# not decode the images again. Bounded; a changed file has another key.
_SPLIT_CACHE: dict[tuple[object, ...], tuple[np.ndarray, np.ndarray]] = {}


def _identity(*paths: Path) -> tuple[object, ...]:
    out: list[object] = []
    for p in paths:
        try:
            st = p.stat()
        except OSError as e:
            raise DataError(f"cannot read {shown_path(p)}: {e.strerror}") from None
        out += [str(p.resolve()), st.st_mtime_ns, st.st_size]
    return tuple(out)


# ---------------------------------------------------------------- the source

def load_animal_mnist(cfg: DataConfig, *, images: bool, download: bool) -> Source:
    """Animal-MNIST from the installed package (or data.root); ``download`` has nothing to
    do: the files come with the package."""
    data_path, label_path = _find_files(cfg)
    key = _identity(data_path, label_path)
    labels = check_labels(label_path, _read(label_path), len(ANIMAL_CLASSES))
    x = _read_images(data_path, labels.size) if images or key not in _SPLIT_CACHE else None
    if key not in _SPLIT_CACHE:
        assert x is not None
        if len(_SPLIT_CACHE) >= 4:
            _SPLIT_CACHE.clear()
        _SPLIT_CACHE[key] = holdout_indices(x, labels)
    train_idx, test_idx = _SPLIT_CACHE[key]
    train_images = test_images = None
    if images:
        assert x is not None
        train_images, test_images = x[train_idx, None], x[test_idx, None]
    return Source(name="animal-mnist", classes=ANIMAL_CLASSES,
                  train_labels=labels[train_idx], test_labels=labels[test_idx], in_channels=1,
                  image_size=28, train_images=train_images, test_images=test_images)
