"""``imagefolder``: data.root/train/<class>/<image> and data.root/test/<class>/<image>; kept
as paths (sorted), decoded by the loader at data.image_size. An unreadable folder is a
one-line :class:`DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mfm.config import ConfigError, DataConfig
from mfm.data.sources.base import DataError, Source, one_line, shown_path, user_root
from mfm.text import visible

__all__ = ["IMAGE_EXTENSIONS", "NAMES", "load_imagefolder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
NAMES = ("imagefolder",)


def _list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=lambda p: p.relative_to(folder).as_posix())


def load_imagefolder(cfg: DataConfig, *, images: bool, download: bool) -> Source:
    """The image paths and labels under data.root (``images`` and ``download`` change
    nothing: images are decoded by the loader, and nothing is downloaded)."""
    try:
        return _imagefolder_listing(cfg)
    except OSError as e:  # an unreadable folder (permissions, a vanished mount)
        where = f" {shown_path(e.filename)}" if e.filename else ""
        raise DataError(f"imagefolder: cannot list{where}: "
                        f"{e.strerror or one_line(e)}") from None


def _classes(root: Path) -> tuple[str, ...]:
    """The class names: train/'s sub-folders, which test/ must have too."""
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
    return classes


def _split_listing(folder: Path, classes: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """(paths, int64 labels) of one split folder, class by class."""
    paths: list[str] = []
    labels: list[int] = []
    for label, c in enumerate(classes):
        files = _list_images(folder / c)
        if not files:
            raise ConfigError("data.root", f"imagefolder: {str(folder / c)!r} has no image "
                                           f"files ({' '.join(IMAGE_EXTENSIONS)})")
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    return tuple(paths), np.asarray(labels, dtype=np.int64)


def _imagefolder_listing(cfg: DataConfig) -> Source:
    root = user_root(cfg)
    if root is None:
        raise ConfigError("data.root", "imagefolder needs data.root: a folder with train/ and "
                                       "test/, one sub-folder per class")
    classes = _classes(root)
    train_paths, train_labels = _split_listing(root / "train", classes)
    test_paths, test_labels = _split_listing(root / "test", classes)
    return Source(name="imagefolder", classes=classes, train_labels=train_labels,
                  test_labels=test_labels, in_channels=3, image_size=cfg.image_size,
                  train_paths=train_paths, test_paths=test_paths)
