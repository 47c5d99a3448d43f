"""Dataset sources: labelled training and test sets as numpy arrays or file paths.

numpy and the standard library only at import time; scikit-learn is imported when the digits
are loaded and torchvision only for a download. Nothing here imports torch, so the TUI can call
:func:`preview_counts`.

Sources (``data.name``):
  digits         scikit-learn's bundled 8x8 digits (1,797 images, offline), 1x8x8; a seeded
                 balanced test split of ``data.test_per_class`` images per class.
  fashion-mnist  IDX files; data.root '' = /usr/share/datasets/fashion-mnist (Debian's
  mnist          dataset-fashion-mnist) then ~/.cache/mfm/<name>. 1x28x28.
  cifar10        the python-pickle batches (cifar-10-batches-py/, cifar-100-python/) in data.root
  cifar100       ('' = ~/.cache/mfm/<name>). 3x32x32. CIFAR-100 uses the fine labels.
  imagefolder    data.root/train/<class>/<image> and data.root/test/<class>/<image>; kept as
                 paths, decoded by the loader at data.image_size.
Missing files are fetched with torchvision's downloader (into data.root, or ~/.cache/mfm/<name>
when data.root is ''); if that fails the error says what was looked for where and how to get it.

Files that are there but wrong (a truncated IDX file, a bad magic number, a CIFAR file that is
not a pickle or lacks the expected keys, labels out of range) raise :class:`DataError`, one line
naming the file and what was expected. CIFAR pickles are read by :class:`CifarUnpickler`, which
builds only what the real batches contain (dicts, lists, str/bytes, ints, numpy arrays): a
pickle that asks for anything else (``os.system``) is refused before it can run.
Labels-only reads (:func:`preview_counts`, the pre-run check) still check every image file's
header and length, so a run is not recorded only to fail on its first load.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import socket
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfm.config import ConfigError, DataConfig
from mfm.data.longtail import Split, make_split
from mfm.text import visible

__all__ = ["IMAGE_EXTENSIONS", "CifarUnpickler", "DataError", "Source", "balanced_holdout",
           "idx_info", "load_source", "preview_counts", "read_cifar_pickle", "read_idx",
           "split_for"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
DOWNLOAD_TIMEOUT_S = 30.0

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
# Where torchvision's downloaders put the raw files under their root.
TORCHVISION_RAW = {"mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}
CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


class DataError(ConfigError):
    """A data file that is there but unusable; one line naming the file (key ``data.root``).

    A ConfigError, so every caller that turns those into one-line errors handles it."""

    def __init__(self, message: str, key: str = "data.root"):
        if message.startswith("Caught DataError") and "\nOriginal Traceback" in message:
            # torch's DataLoader re-raising a worker's DataError (imagefolder decoding) with
            # the worker's traceback as the message: keep the worker's own last line.
            last = message.rstrip().splitlines()[-1]
            message = last.partition("DataError: ")[2].removeprefix(f"{key}: ") or last
        super().__init__(key, message)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes
        return (type(self), (self.message, self.key))


def _shown_path(path: str | Path) -> str:
    return repr(str(path))


@dataclass(frozen=True)
class Source:
    """A labelled dataset before the long-tail split.

    In-memory sources carry ``train_images``/``test_images`` (uint8, (N, C, H, W)); the
    imagefolder source carries ``train_paths``/``test_paths`` instead. Labels are int64.
    """

    name: str
    classes: tuple[str, ...]
    train_labels: np.ndarray
    test_labels: np.ndarray
    in_channels: int
    image_size: int
    train_images: np.ndarray | None = None
    test_images: np.ndarray | None = None
    train_paths: tuple[str, ...] | None = None
    test_paths: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_memory(self) -> bool:
        return self.train_images is not None


def _one_line(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def _cache_dir(name: str) -> Path:
    return Path.home() / ".cache" / "mfm" / name


def _user_root(cfg: DataConfig) -> Path | None:
    """data.root as a Path, or None when ''; a root that does not exist is an error."""
    if not cfg.root:
        return None
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise ConfigError("data.root", f"{cfg.root!r} does not exist")
    if not root.is_dir():
        raise ConfigError("data.root", f"{cfg.root!r} is not a folder")
    return root


def _torchvision_download(name: str, target: Path) -> str | None:
    """Download ``name`` with torchvision into ``target``; None on success, else why not."""
    old_timeout = socket.getdefaulttimeout()
    try:
        import torchvision.datasets as tvd

        cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST,
               "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
        target.mkdir(parents=True, exist_ok=True)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        for train in (True, False):
            cls(str(target), train=train, download=True)
        return None
    except BaseException as e:  # noqa: BLE001 - any failure becomes one clear ConfigError
        if isinstance(e, KeyboardInterrupt):
            raise
        return _one_line(e)
    finally:
        socket.setdefaulttimeout(old_timeout)


def _missing(name: str, what: str, where: list[Path], why: str | None, how: str) -> ConfigError:
    places = " or ".join(str(p) for p in where)
    tried = f"; torchvision download failed ({why})" if why else "; download not attempted"
    return ConfigError("data.root", f"{name}: no {what} in {places}{tried}; {how}")


# ---------------------------------------------------------------- digits

def balanced_holdout(labels: np.ndarray, num_classes: int, per_class: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held_out): ``per_class`` indices per class (in label order, each class shuffled
    by ``rng``) held out; both sorted int64."""
    parts = []
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        parts.append(idx[rng.permutation(idx.size)][:per_class])
    held = np.sort(np.concatenate(parts)).astype(np.int64)
    mask = np.ones(labels.size, dtype=bool)
    mask[held] = False
    return np.flatnonzero(mask).astype(np.int64), held


def _digits(cfg: DataConfig, images: bool) -> Source:
    from sklearn.datasets import load_digits  # lazy: slow import, and only digits needs it

    d = load_digits()
    labels = np.asarray(d.target, dtype=np.int64)
    sizes = np.bincount(labels, minlength=10)
    smallest = int(sizes.min())
    if cfg.test_per_class >= smallest:
        raise ConfigError("data.test_per_class",
                          f"must be <= {smallest - 1} for digits (smallest class has "
                          f"{smallest} images) (got {cfg.test_per_class})")
    # A stream distinct from make_split's default_rng(seed).
    train_idx, test_idx = balanced_holdout(labels, 10, cfg.test_per_class,
                                           np.random.default_rng([cfg.seed, 1]))
    train_images = test_images = None
    if images:
        u8 = np.rint(np.asarray(d.images, dtype=np.float64) * (255.0 / 16.0))
        u8 = np.clip(u8, 0, 255).astype(np.uint8)[:, None, :, :]
        train_images, test_images = u8[train_idx], u8[test_idx]
    return Source(name="digits", classes=tuple(str(c) for c in range(10)),
                  train_labels=labels[train_idx], test_labels=labels[test_idx], in_channels=1,
                  image_size=8, train_images=train_images, test_images=test_images)


# ---------------------------------------------------------------- IDX (mnist, fashion-mnist)

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _idx_open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _idx_header(path: Path, head: bytes, f: Any) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, number of data bytes expected) from an IDX file's first bytes; ``f`` is
    positioned after the 4 magic bytes and is read up to the end of the header."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
        raise DataError(f"{_shown_path(path)} is not an IDX file (bad magic number "
                        f"{head[:4].hex() or 'empty'}; expected 0000 then a type byte 08-0e "
                        "and the number of dimensions)")
    dtype, ndim = _IDX_DTYPES[head[2]], head[3]
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{_shown_path(path)} is a truncated IDX file (header: {ndim} "
                        f"dimensions need {4 + 4 * ndim} bytes, found {4 + len(dims)})")
    shape = tuple(int(x) for x in np.frombuffer(dims, dtype=">u4", count=ndim))
    n = 1
    for d in shape:
        n *= d
    return dtype, shape, n * dtype.itemsize


def _idx_length_error(path: Path, shape: tuple[int, ...], want: int, found: int) -> DataError:
    what = "truncated" if found < want else "too long"
    return DataError(f"{_shown_path(path)} is a corrupt IDX file ({what}): header says shape "
                     f"{shape}, which needs {want} data bytes; found {found}")


def _idx_read_error(path: Path, e: BaseException) -> DataError:
    why = "truncated gzip data" if isinstance(e, EOFError) else _one_line(e)
    return DataError(f"cannot read IDX file {_shown_path(path)}: {why}")


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


def _check_labels(path: Path, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` as int64 after checking they are a 1-D list of class ids < num_classes."""
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{_shown_path(path)}: expected a 1-D list of integer labels, got "
                        f"{labels.dtype} {labels.shape}")
    if labels.size == 0:
        raise DataError(f"{_shown_path(path)}: no labels (expected at least one image)")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{_shown_path(path)}: labels must be 0..{num_classes - 1}, found "
                        f"{lo}..{hi}")
    return labels.astype(np.int64)


def _check_idx_images(path: Path, dtype: np.dtype, shape: tuple[int, ...], n: int) -> None:
    if dtype != np.uint8 or len(shape) != 3 or shape[0] != n:
        raise DataError(f"{_shown_path(path)}: expected uint8 images (N, H, W) with N = {n} "
                        f"(the number of labels), got {dtype} {shape}")


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


def _idx_source(cfg: DataConfig, name: str, images: bool, download: bool) -> Source:
    root = _user_root(cfg)
    cache = _cache_dir(name)
    if root is not None:
        folders = [root, cache]
    elif name == "fashion-mnist":
        folders = [Path(DEBIAN_FASHION_MNIST), cache]
    else:
        folders = [cache]
    files = next((f for f in map(lambda d: _find_idx(d, name), folders) if f), None)
    if files is None:
        target = root if root is not None else cache
        why = _torchvision_download(name, target) if download else None
        files = _find_idx(target, name) if download and why is None else None
        if files is None:
            how = ("apt-get install dataset-fashion-mnist, or put the four IDX files in "
                   "data.root, or allow network access for torchvision's download"
                   if name == "fashion-mnist" else
                   "put the four IDX files in data.root, or allow network access for "
                   "torchvision's download")
            raise _missing(name, "IDX files (train-images-idx3-ubyte[.gz], "
                                 "train-labels-idx1-ubyte[.gz], t10k-...)", folders, why, how)
    classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(c) for c in range(10))
    train_labels = _check_labels(files["train_labels"], read_idx(files["train_labels"]),
                                 len(classes))
    test_labels = _check_labels(files["test_labels"], read_idx(files["test_labels"]),
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


# ---------------------------------------------------------------- CIFAR

class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


def _latin1_encode(text: str, encoding: str) -> bytes:
    # How pickle protocols 0-2 write a bytes object: _codecs.encode(text, 'latin1').
    if encoding != "latin1" or not isinstance(text, str):
        raise _Refused("_codecs", f"encode(..., {encoding!r})")
    return text.encode("latin1")


def _cifar_globals() -> dict[tuple[str, str], Any]:
    # What the real batches reference (numpy.core.multiarray._reconstruct, numpy.ndarray,
    # numpy.dtype; Python 2 str for keys, names and array bytes), plus what numpy 2 and newer
    # pickle protocols write for the same dicts, each mapped to this numpy's objects:
    # numpy._core (numpy 2's module name), multiarray.scalar (a label list of numpy ints),
    # numeric._frombuffer (an array at protocol 5, Python 3.14's default) and _codecs.encode
    # (bytes at protocol 2, latin1 only). None of these runs anything but a numpy constructor.
    reconstruct = np.array(0).__reduce__()[0]
    scalar = np.int64(0).__reduce__()[0]
    frombuffer = np.arange(2).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                           ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): _latin1_encode}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR python batches: dicts, lists, str/bytes, ints and numpy
    arrays. ``find_class`` hands out numpy's array/dtype/scalar reconstructors and nothing
    else, so a pickle that asks for any other global (``os.system``, ``builtins.eval``) is
    refused before anything in it runs."""

    _allowed: dict[tuple[str, str], Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if CifarUnpickler._allowed is None:
            CifarUnpickler._allowed = _cifar_globals()
        found = CifarUnpickler._allowed.get((module, name))
        if found is None:
            raise _Refused(module, name)
        return found


def read_cifar_pickle(path: str | Path, *, encoding: str = "latin1") -> Any:
    """Unpickle one CIFAR file with :class:`CifarUnpickler`. ``encoding`` decodes Python 2
    str objects (the real files' keys and names): 'latin1' gives str keys, 'bytes' gives
    bytes keys; numpy arrays load either way. Errors are one-line :class:`DataError`."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return CifarUnpickler(f, encoding=encoding).load()
    except _Refused as e:
        module = "os" if e.module in ("posix", "nt") else e.module  # os.system's home
        asked = visible(f"{module}.{e.name}", limit=120)
        raise DataError(f"{_shown_path(path)} is not a CIFAR batch (it asks to load {asked}); "
                        "refusing to unpickle it") from None
    except OSError as e:
        raise DataError(f"cannot read CIFAR file {_shown_path(path)}: {_one_line(e)}") from None
    except (EOFError, pickle.UnpicklingError) as e:
        if not isinstance(e, EOFError) and "truncated" not in str(e):
            raise DataError(f"{_shown_path(path)} is not a CIFAR python batch (a pickle): "
                            f"{_one_line(e)}") from None
        raise DataError(f"{_shown_path(path)} is a truncated CIFAR file (the pickle ends early; "
                        "extract the archive again)") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise DataError(f"{_shown_path(path)} is not a CIFAR python batch (a pickle): "
                        f"{_one_line(e)}") from None


def _str_keys(path: Path, obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """A CIFAR pickle's dict with str keys (the real files have Python 2 str keys, which
    load as bytes under encoding='bytes'); the ``keys`` must be there."""
    if not isinstance(obj, dict):
        raise DataError(f"{_shown_path(path)}: expected a CIFAR dict with keys "
                        f"{', '.join(keys)}; found a {type(obj).__name__}")
    out = {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    missing = [k for k in keys if k not in out]
    if missing:
        found = sorted(str(k) for k in out)[:8]
        raise DataError(f"{_shown_path(path)}: not a CIFAR file for this dataset: no "
                        f"{', '.join(missing)} key (found: {visible(', '.join(found), 120)})")
    return out


def _names(path: Path, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, (str, bytes)) for v in value):
        raise DataError(f"{_shown_path(path)}: {key} must be a non-empty list of class names")
    return tuple(v.decode("latin1") if isinstance(v, bytes) else v for v in value)


def _cifar_batch(path: Path, label_key: str, num_classes: int,
                 images: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """(images (N, 3, 32, 32) uint8 or None, labels int64) from one checked CIFAR batch."""
    batch = _str_keys(path, read_cifar_pickle(path), ("data", label_key))
    try:
        labels = np.asarray(batch[label_key])
    except Exception:  # noqa: BLE001 - ragged or odd content
        labels = np.asarray([], dtype=object)
    labels = _check_labels(path, labels, num_classes)
    data = batch["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape != (labels.size, 3072):
        got = (f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DataError(f"{_shown_path(path)}: expected data as uint8 ({labels.size}, 3072) "
                        f"(one 32x32 RGB image per label), got {got}")
    return (data.reshape(-1, 3, 32, 32) if images else None), labels


def _cifar_files(folder: Path, name: str) -> dict[str, list[Path]] | None:
    d = folder / CIFAR_DIRS[name]
    if name == "cifar10":
        files = {"train": [d / f"data_batch_{i}" for i in range(1, 6)],
                 "test": [d / "test_batch"], "meta": [d / "batches.meta"]}
    else:
        files = {"train": [d / "train"], "test": [d / "test"], "meta": [d / "meta"]}
    ok = all(p.is_file() for ps in files.values() for p in ps)
    return files if ok else None


def _cifar_source(cfg: DataConfig, name: str, images: bool, download: bool) -> Source:
    root = _user_root(cfg)
    folder = root if root is not None else _cache_dir(name)
    files = _cifar_files(folder, name)
    if files is None:
        why = _torchvision_download(name, folder) if download else None
        files = _cifar_files(folder, name) if download and why is None else None
        if files is None:
            url = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" if name == "cifar10"
                   else "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz")
            raise _missing(name, f"{CIFAR_DIRS[name]}/ (python batches)", [folder], why,
                           f"extract {url} into data.root, or allow network access for "
                           "torchvision's download")
    label_key = "labels" if name == "cifar10" else "fine_labels"
    names_key = "label_names" if name == "cifar10" else "fine_label_names"
    meta_path = files["meta"][0]
    meta = _str_keys(meta_path, read_cifar_pickle(meta_path), (names_key,))
    classes = _names(meta_path, meta[names_key], names_key)

    def read(paths: list[Path]) -> tuple[np.ndarray | None, np.ndarray]:
        xs, ys = [], []
        for p in paths:
            x, y = _cifar_batch(p, label_key, len(classes), images)
            ys.append(y)
            if x is not None:
                xs.append(x)
        return (np.concatenate(xs) if images else None), np.concatenate(ys)

    train_images, train_labels = read(files["train"])
    test_images, test_labels = read(files["test"])
    return Source(name=name, classes=classes, train_labels=train_labels,
                  test_labels=test_labels, in_channels=3, image_size=32,
                  train_images=train_images, test_images=test_images)


# ---------------------------------------------------------------- imagefolder

def _list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: p.relative_to(folder).as_posix())


def _imagefolder(cfg: DataConfig) -> Source:
    try:
        return _imagefolder_listing(cfg)
    except OSError as e:  # an unreadable folder (permissions, a vanished mount)
        where = f" {_shown_path(e.filename)}" if e.filename else ""
        raise DataError(f"imagefolder: cannot list{where}: "
                        f"{e.strerror or _one_line(e)}") from None


def _imagefolder_listing(cfg: DataConfig) -> Source:
    root = _user_root(cfg)
    if root is None:
        raise ConfigError("data.root", "imagefolder needs data.root: a folder with train/ and "
                                       "test/, one sub-folder per class")
    train_dir, test_dir = root / "train", root / "test"
    for d in (train_dir, test_dir):
        if not d.is_dir():
            raise ConfigError("data.root", f"imagefolder: no {d.name}/ folder in {str(root)!r} "
                                           "(expected train/<class>/<image> and "
                                           "test/<class>/<image>)")
    classes = tuple(sorted(p.name for p in train_dir.iterdir() if p.is_dir()))
    if not classes:
        raise ConfigError("data.root", f"imagefolder: {str(train_dir)!r} has no class "
                                       "sub-folders")
    test_classes = tuple(sorted(p.name for p in test_dir.iterdir() if p.is_dir()))
    if test_classes != classes:
        missing = sorted(set(classes) - set(test_classes))
        extra = sorted(set(test_classes) - set(classes))
        raise ConfigError("data.root", f"imagefolder: test/ classes differ from train/ "
                                       f"(missing in test: {visible(missing, 100)}, extra in "
                                       f"test: {visible(extra, 100)})")
    out = {}
    for split, d in (("train", train_dir), ("test", test_dir)):
        paths, labels = [], []
        for label, c in enumerate(classes):
            files = _list_images(d / c)
            if not files:
                raise ConfigError("data.root", f"imagefolder: {str(d / c)!r} has no image files "
                                               f"({' '.join(IMAGE_EXTENSIONS)})")
            paths += [str(p) for p in files]
            labels += [label] * len(files)
        out[split] = (tuple(paths), np.asarray(labels, dtype=np.int64))
    return Source(name="imagefolder", classes=classes, train_labels=out["train"][1],
                  test_labels=out["test"][1], in_channels=3, image_size=cfg.image_size,
                  train_paths=out["train"][0], test_paths=out["test"][0])


# ---------------------------------------------------------------- entry points

def _load(cfg: DataConfig, images: bool, download: bool) -> Source:
    name = cfg.name
    if name == "digits":
        return _digits(cfg, images)
    if name in TORCHVISION_RAW:
        return _idx_source(cfg, name, images, download)
    if name in CIFAR_DIRS:
        return _cifar_source(cfg, name, images, download)
    if name == "imagefolder":
        return _imagefolder(cfg)
    raise ConfigError("data.name", f"unknown dataset {name!r}")


def load_source(cfg: DataConfig, *, download: bool = True) -> Source:
    """The dataset named by ``cfg.name``, images included (paths for imagefolder).

    ``download=False`` never touches the network: missing files are an error at once.
    """
    return _load(cfg, images=True, download=download)


def split_for(cfg: DataConfig, source: Source) -> Split:
    """The long-tailed split of ``source``'s training set that ``cfg`` describes."""
    return make_split(source.train_labels, source.num_classes, profile=cfg.profile,
                      imbalance_factor=cfg.imbalance_factor,
                      meta_per_class=cfg.meta_per_class, seed=cfg.seed, step_mu=cfg.step_mu,
                      permute_classes=cfg.permute_classes, head_count=cfg.head_count,
                      val_per_class=cfg.val_per_class, dataset=cfg.name,
                      meta_source=cfg.meta_source)


def preview_counts(cfg: DataConfig, *, download: bool = False) -> dict[str, Any]:
    """Per-class counts of the split ``cfg`` describes, without torch and without decoding
    images where the format allows (labels only). Keys: classes, train, meta, val, test (lists
    indexed by class label), split_hash. Never downloads unless asked."""
    source = _load(cfg, images=False, download=download)
    split = split_for(cfg, source)
    test = np.bincount(source.test_labels, minlength=source.num_classes)
    return {"classes": list(source.classes), "train": list(split.train_counts),
            "meta": list(split.meta_counts), "test": [int(v) for v in test],
            "val": [int(cfg.val_per_class)] * source.num_classes,
            "split_hash": split.hash}
