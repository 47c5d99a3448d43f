"""``mnist`` and ``fashion-mnist``: IDX files, 1x28x28.

data.root '' looks in /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist, for
Fashion-MNIST) then ~/.cache/mfm/<name>; torchvision's raw/ sub-folder is looked in too.
A truncated file, a bad magic number or a wrong shape is a one-line :class:`DataError`;
labels-only reads still check each image file's header and length (:func:`idx_info`).
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mfm.config import DataConfig
from mfm.data.sources.base import (
    DataError,
    Source,
    cache_dir,
    check_labels,
    one_line,
    shown_path,
    user_root,
)
from mfm.data.sources.download import missing, torchvision_download

__all__ = ["DEBIAN_FASHION_MNIST", "FASHION_CLASSES", "IDX_FILES", "NAMES", "TORCHVISION_RAW",
           "idx_info", "load_idx", "read_idx"]

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
# Where torchvision's downloaders put the raw files under their root.
TORCHVISION_RAW = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}
NAMES = tuple(TORCHVISION_RAW)

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


# ---------------------------------------------------------------- reading IDX files

def _idx_open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_header(path: Path, head: bytes, f: Any) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, number of data bytes expected) from an IDX file's first bytes; ``f`` is
    positioned after the 4 magic bytes and is read up to the end of the header."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise DataError(f"{shown_path(path)} is not an IDX file (bad magic number "
                        f"{head[:4].hex() or 'empty'}; expected 0000 then a type byte 08-0e "
                        "and the number of dimensions)")
    dtype, ndim = _IDX_DTYPES[head[2]], head[3]
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{shown_path(path)} is a truncated IDX file (header: {ndim} "
                        f"dimensions need {4 + 4 * ndim} bytes, found {4 + len(dims)})")
    shape = tuple(int(x) for x in np.frombuffer(dims, dtype=">u4", count=ndim))
    n = 1
    for d in shape:
        n *= d
    return dtype, shape, n * dtype.itemsize


def _idx_length_error(path: Path, shape: tuple[int, ...], want: int, found: int) -> DataError:
    what = "truncated" if found < want else "too long"
    return DataError(f"{shown_path(path)} is a corrupt IDX file ({what}): header says shape "
                     f"{shape}, which needs {want} data bytes; found {found}")


def _idx_read_error(path: Path, e: BaseException) -> DataError:
    why = "truncated gzip data" if isinstance(e, EOFError) else one_line(e)
    return DataError(f"cannot read IDX file {shown_path(path)}: {why}")


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzipped when the name ends in .gz) into a numpy array."""
    path = Path(path)
    try:
        with _idx_open(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise _idx_read_error(path, e) from None
    f = io.BytesIO(data)
    dtype, shape, want = _idx_header(path, f.read(4), f)
    header = f.tell()
    if len(data) - header != want:
        raise _idx_length_error(path, shape, want, len(data) - header)
    n = want // dtype.itemsize
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


# idx_info results by (path, mtime, size): a preview redrawn in the TUI does not decompress
# the same 26 MB again. Bounded; a changed file has another key.
_IDX_INFO_CACHE: dict[tuple[str, int, int], tuple[np.dtype, tuple[int, ...]]] = {}


def idx_info(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) of an IDX file whose header and length have been checked, without
    keeping its data in memory (a gzipped file is decompressed in chunks)."""
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError as e:
        raise _idx_read_error(path, e) from None
    if key not in _IDX_INFO_CACHE:
        if len(_IDX_INFO_CACHE) >= 16:
            _IDX_INFO_CACHE.clear()
        _IDX_INFO_CACHE[key] = _idx_info(path)
    return _IDX_INFO_CACHE[key]


def _idx_info(path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    try:
        with _idx_open(path) as f:
            dtype, shape, want = _idx_header(path, f.read(4), f)
            if path.suffix == ".gz":
                found = 0
                while chunk := f.read(1 << 20):
                    found += len(chunk)
            else:
                found = os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, EOFError, zlib.error) as e:
        raise _idx_read_error(path, e) from None
    if found != want:
        raise _idx_length_error(path, shape, want, found)
    return dtype, shape


def _check_idx_images(path: Path, dtype: np.dtype, shape: tuple[int, ...], n: int) -> None:
    if dtype != np.uint8 or len(shape) != 3 or shape[0] != n:
        raise DataError(f"{shown_path(path)}: expected uint8 images (N, H, W) with N = {n} "
                        f"(the number of labels), got {dtype} {shape}")


# ---------------------------------------------------------------- finding them

def _find_idx(folder: Path, name: str) -> dict[str, Path] | None:
    for sub in (folder, folder / TORCHVISION_RAW[name]):
        found = {}
        for key, stem in IDX_FILES.items():
            for candidate in (sub / stem, sub / (stem + ".gz")):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(IDX_FILES):
            return found
    return None


def _idx_files(cfg: DataConfig, name: str, download: bool) -> dict[str, Path]:
    """The four IDX files of ``name``: found, else downloaded (when allowed), else an error
    naming every folder looked in."""
    root = user_root(cfg)
    cache = cache_dir(name)
    if root is not None:
        folders = [root, cache]
    elif name == "fashion-mnist":
        folders = [Path(DEBIAN_FASHION_MNIST), cache]
    else:
        folders = [cache]
    files = next((f for f in map(lambda d: _find_idx(d, name), folders) if f), None)
    if files is not None:
        return files
    target = root if root is not None else cache
    why = torchvision_download(name, target) if download else None
    files = _find_idx(target, name) if download and why is None else None
    if files is None:
        how = ("apt-get install dataset-fashion-mnist, or put the four IDX files in "
               "data.root, or allow network access for torchvision's download"
               if name == "fashion-mnist" else
               "put the four IDX files in data.root, or allow network access for "
               "torchvision's download")
        raise missing(name, "IDX files (train-images-idx3-ubyte[.gz], "
                            "train-labels-idx1-ubyte[.gz], t10k-...)", folders, why, how)
    return files


# ---------------------------------------------------------------- the source

def load_idx(cfg: DataConfig, *, images: bool, download: bool) -> Source:
    """MNIST or Fashion-MNIST (``cfg.name``); without ``images`` the image files' headers and
    lengths are still checked."""
    name = cfg.name
    files = _idx_files(cfg, name, download)
    classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(c) for c in range(10))
    train_labels = check_labels(files["train_labels"], read_idx(files["train_labels"]),
                                len(classes))
    test_labels = check_labels(files["test_labels"], read_idx(files["test_labels"]),
                               len(classes))
    train_images = test_images = None
    arrays = []
    for key, labels in (("train_images", train_labels), ("test_images", test_labels)):
        if images:
            x = read_idx(files[key])
            _check_idx_images(files[key], x.dtype, x.shape, labels.size)
            arrays.append(x[:, None, :, :])
        else:  # labels only: still check the image file's header and length
            _check_idx_images(files[key], *idx_info(files[key]), labels.size)
    if images:
        train_images, test_images = arrays
    return Source(name=name, classes=classes, train_labels=train_labels,
                  test_labels=test_labels, in_channels=1, image_size=28,
                  train_images=train_images, test_images=test_images)
