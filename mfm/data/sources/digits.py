"""``digits``: scikit-learn's bundled 8x8 digits (1,797 images, offline), 1x8x8, with a seeded
balanced test split of ``data.test_per_class`` images per class.

scikit-learn is imported when the digits are loaded, not at import time.
"""

from __future__ import annotations

import numpy as np

from mfm.config import ConfigError, DataConfig
from mfm.data.sources.base import Source

__all__ = ["NAMES", "balanced_holdout", "load_digits"]

NAMES = ("digits",)


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


def load_digits(cfg: DataConfig, *, images: bool, download: bool) -> Source:
    """The digits (bundled with scikit-learn: ``download`` has nothing to do)."""
    from sklearn.datasets import load_digits as sklearn_digits  # lazy: slow, digits only

    d = sklearn_digits()
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
