"""``cifar10`` and ``cifar100``: the python-pickle batches (cifar-10-batches-py/,
cifar-100-python/) in data.root ('' = ~/.cache/mfm/<name>), 3x32x32; CIFAR-100 uses the fine
labels.

CIFAR pickles are read by the restricted unpickler of :mod:`.safe_pickle` (``CifarUnpickler``
here), which builds only what the real batches contain (dicts, lists, str/bytes, ints, numpy
arrays): a pickle that asks for anything else (``os.system``) is refused before it can run. A
file that is not a pickle or lacks the expected keys is a one-line :class:`DataError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mfm.config import DataConfig
from mfm.data.sources.base import (
    DataError,
    Source,
    cache_dir,
    check_labels,
    shown_path,
    user_root,
)
from mfm.data.sources.download import missing, torchvision_download
from mfm.data.sources.safe_pickle import NumpyUnpickler, read_numpy_pickle
from mfm.text import visible

__all__ = ["CIFAR_DIRS", "NAMES", "CifarUnpickler", "load_cifar", "read_cifar_pickle"]

CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
NAMES = tuple(CIFAR_DIRS)


# ---------------------------------------------------------------- the restricted unpickler

# The rule of what a data pickle may build lives in safe_pickle; CIFAR's name for it is kept.
CifarUnpickler = NumpyUnpickler


def read_cifar_pickle(path: str | Path, *, encoding: str = "latin1") -> Any:
    """Unpickle one CIFAR file with the restricted :class:`NumpyUnpickler`. ``encoding``
    decodes Python 2 str objects (the real files' keys and names): 'latin1' gives str keys,
    'bytes' gives bytes keys; numpy arrays load either way. Errors are one-line
    :class:`DataError`."""
    return read_numpy_pickle(path, noun="a CIFAR batch", fix="extract the archive again",
                             encoding=encoding)


# ---------------------------------------------------------------- checking what it holds

def _str_keys(path: Path, obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """A CIFAR pickle's dict with str keys (the real files have Python 2 str keys, which
    load as bytes under encoding='bytes'); the ``keys`` must be there."""
    if not isinstance(obj, dict):
        raise DataError(f"{shown_path(path)}: expected a CIFAR dict with keys "
                        f"{', '.join(keys)}; found a {type(obj).__name__}")
    out = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    missing_keys = [k for k in keys if k not in out]
    if missing_keys:
        found = sorted(str(k) for k in out)[:8]
        raise DataError(f"{shown_path(path)}: not a CIFAR file for this dataset: no "
                        f"{', '.join(missing_keys)} key (found: "
                        f"{visible(', '.join(found), 120)})")
    return out


def _names(path: Path, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, (str, bytes)) for v in value):
        raise DataError(f"{shown_path(path)}: {key} must be a non-empty list of class names")
    return tuple(v.decode("latin1") if isinstance(v, bytes) else v for v in value)


def _cifar_batch(path: Path, label_key: str, num_classes: int,
                 images: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """(images (N, 3, 32, 32) uint8 or None, labels int64) from one checked CIFAR batch."""
    batch = _str_keys(path, read_cifar_pickle(path), ("data", label_key))
    try:
        labels = np.asarray(batch[label_key])
    except Exception:  # noqa: BLE001 - ragged or odd content
        labels = np.asarray([], dtype=object)
    labels = check_labels(path, labels, num_classes)
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape != (labels.size, 3072):
        got = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DataError(f"{shown_path(path)}: expected data as uint8 ({labels.size}, 3072) "
                        f"(one 32x32 RGB image per label), got {got}")
    return (data.reshape(-1, 3, 32, 32) if images else None), labels


def _read_batches(paths: list[Path], label_key: str, num_classes: int,
                  images: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """The batches of one split, concatenated in order."""
    xs, ys = [], []
    for p in paths:
        x, y = _cifar_batch(p, label_key, num_classes, images)
        ys.append(y)
        if x is not None:
            xs.append(x)
    return (np.concatenate(xs) if images else None), np.concatenate(ys)


# ---------------------------------------------------------------- finding them

def _cifar_files(folder: Path, name: str) -> dict[str, list[Path]] | None:
    d = folder / CIFAR_DIRS[name]
    if name == "cifar10":
        files = {"train": [d / f"data_batch_{i}" for i in range(1, 6)],
                 "test": [d / "test_batch"], "meta": [d / "batches.meta"]}
    else:
        files = {"train": [d / "train"], "test": [d / "test"], "meta": [d / "meta"]}
    ok = all(p.is_file() for ps in files.values() for p in ps)
    return files if ok else None


def _find_or_fetch(cfg: DataConfig, name: str, download: bool) -> dict[str, list[Path]]:
    """The batch files of ``name``: found, else downloaded (when allowed), else an error."""
    root = user_root(cfg)
    folder = root if root is not None else cache_dir(name)
    files = _cifar_files(folder, name)
    if files is not None:
        return files
    why = torchvision_download(name, folder) if download else None
    files = _cifar_files(folder, name) if download and why is None else None
    if files is None:
        url = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" if name == "cifar10"
               else "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")
        raise missing(name, f"{CIFAR_DIRS[name]}/ (python batches)", [folder], why,
                      f"extract {url} into data.root, or allow network access for "
                      "torchvision's download")
    return files


# ---------------------------------------------------------------- the source

def load_cifar(cfg: DataConfig, *, images: bool, download: bool) -> Source:
    """CIFAR-10 or CIFAR-100 (``cfg.name``); every batch is checked even without images."""
    name = cfg.name
    files = _find_or_fetch(cfg, name, download)
    label_key = "labels" if name == "cifar10" else "fine_labels"
    names_key = "label_names" if name == "cifar10" else "fine_label_names"
    meta_path = files["meta"][0]
    meta = _str_keys(meta_path, read_cifar_pickle(meta_path), (names_key,))
    classes = _names(meta_path, meta[names_key], names_key)
    train_images, train_labels = _read_batches(files["train"], label_key, len(classes), images)
    test_images, test_labels = _read_batches(files["test"], label_key, len(classes), images)
    return Source(name=name, classes=classes, train_labels=train_labels,
                  test_labels=test_labels, in_channels=3, image_size=32,
                  train_images=train_images, test_images=test_images)
