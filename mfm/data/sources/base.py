"""What every source format shares: the :class:`Source` it returns, :class:`DataError` for a
file that is there but wrong, where the files are looked for, and the label check.

numpy and the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfm.config import ConfigError, DataConfig

__all__ = ["DataError", "Source", "cache_dir", "check_labels", "one_line", "shown_path",
           "user_root"]


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


def shown_path(path: str | Path) -> str:
    """A path as error messages quote it."""
    return repr(str(path))


def one_line(err: BaseException) -> str:
    """An exception as one line of at most 200 characters."""
    text = f"{type(err).__name__}: {err}".replace("\n", " ").replace("\r", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def cache_dir(name: str) -> Path:
    """Where a dataset's files go when data.root is '': ~/.cache/mfm/<name>."""
    return Path.home() / ".cache" / "mfm" / name


def user_root(cfg: DataConfig) -> Path | None:
    """data.root as a Path, or None when ''; a root that does not exist is an error."""
    if not cfg.root:
        return None
    root = Path(cfg.root).expanduser()
    if not root.exists():
        raise ConfigError("data.root", f"{cfg.root!r} does not exist")
    if not root.is_dir():
        raise ConfigError("data.root", f"{cfg.root!r} is not a folder")
    return root


def check_labels(path: Path, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``labels`` as int64 after checking they are a 1-D list of class ids < num_classes."""
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise DataError(f"{shown_path(path)}: expected a 1-D list of integer labels, got "
                        f"{labels.dtype} {labels.shape}")
    if labels.size == 0:
        raise DataError(f"{shown_path(path)}: no labels (expected at least one image)")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(f"{shown_path(path)}: labels must be 0..{num_classes - 1}, found "
                        f"{lo}..{hi}")
    return labels.astype(np.int64)
