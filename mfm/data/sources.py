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
"""

from __future__ import annotations

import gzip
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfm.config import ConfigError, DataConfig
from mfm.data.longtail import Split, make_split

__all__ = ["IMAGE_EXTENSIONS", "Source", "balanced_holdout", "load_source", "preview_counts",
           "read_idx", "split_for"]

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

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (gzipped when the name ends in .gz) into a numpy array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ConfigError("data.root", f"cannot read IDX file {str(path)!r}: "
                                       f"{_one_line(e)}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ConfigError("data.root", f"{str(path)!r} is not an IDX file (bad magic number "
                                       f"{data[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ConfigError("data.root", f"{str(path)!r} is a truncated IDX file (header)")
    shape = tuple(int(x) for x in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(data) - header != n * dtype.itemsize:
        raise ConfigError("data.root", f"{str(path)!r} is a corrupt IDX file: header says "
                                       f"shape {shape}, found {len(data) - header} data bytes")
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


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
    train_labels = read_idx(files["train_labels"]).astype(np.int64)
    test_labels = read_idx(files["test_labels"]).astype(np.int64)
    train_images = test_images = None
    if images:
        arrays = []
        for key, labels in (("train_images", train_labels), ("test_images", test_labels)):
            x = read_idx(files[key])
            if x.dtype != np.uint8 or x.ndim != 3 or x.shape[0] != labels.size:
                raise ConfigError("data.root", f"{str(files[key])!r}: expected uint8 images "
                                               f"(N, H, W) with N = {labels.size}, got "
                                               f"{x.dtype} {x.shape}")
            arrays.append(x[:, None, :, :])
        train_images, test_images = arrays
    classes = FASHION_CLASSES if name == "fashion-mnist" else tuple(str(c) for c in range(10))
    return Source(name=name, classes=classes, train_labels=train_labels,
                  test_labels=test_labels, in_channels=1, image_size=28,
                  train_images=train_images, test_images=test_images)


# ---------------------------------------------------------------- CIFAR

def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as e:  # noqa: BLE001
        raise ConfigError("data.root", f"cannot read CIFAR file {str(path)!r}: "
                                       f"{_one_line(e)}") from None


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
    meta = _unpickle(files["meta"][0])
    classes = tuple(meta["label_names" if name == "cifar10" else "fine_label_names"])

    def read(paths: list[Path]) -> tuple[np.ndarray | None, np.ndarray]:
        xs, ys = [], []
        for p in paths:
            batch = _unpickle(p)
            ys.append(np.asarray(batch[label_key], dtype=np.int64))
            if images:
                xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
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
                                       f"(missing in test: {missing}, extra in test: {extra})")
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
                      val_per_class=cfg.val_per_class, dataset=cfg.name)


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
