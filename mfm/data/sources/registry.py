"""The name -> loader table (``data.name``) and the entry points built on it: the dataset
(:func:`load_source`), its long-tailed split (:func:`split_for`) and the per-class counts the
TUI and the pre-run check show without torch (:func:`preview_counts`).

A format is one module with a loader ``(cfg, *, images, download) -> Source`` and the names
it serves; adding one is adding its module to :data:`LOADERS`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import numpy as np

from mfm.config import ConfigError, DataConfig
from mfm.data.longtail import Split, make_split
from mfm.data.sources import animal_mnist, cifar, digits, idx, imagefolder
from mfm.data.sources.base import Source

__all__ = ["LOADERS", "Loader", "limit_test", "load_source", "preview_counts", "split_for"]


class Loader(Protocol):
    """A format's loader: the dataset ``cfg.name`` names. ``images=False`` reads labels only
    (image files are still checked where the format allows); ``download=False`` never
    touches the network."""

    def __call__(self, cfg: DataConfig, *, images: bool, download: bool) -> Source: ...


LOADERS: dict[str, Loader] = {
    **dict.fromkeys(digits.NAMES, digits.load_digits),
    **dict.fromkeys(idx.NAMES, idx.load_idx),
    **dict.fromkeys(cifar.NAMES, cifar.load_cifar),
    **dict.fromkeys(animal_mnist.NAMES, animal_mnist.load_animal_mnist),
    **dict.fromkeys(imagefolder.NAMES, imagefolder.load_imagefolder),
}


def _load(cfg: DataConfig, images: bool, download: bool) -> Source:
    loader = LOADERS.get(cfg.name)
    if loader is None:
        raise ConfigError("data.name", f"unknown dataset {cfg.name!r}")
    return limit_test(loader(cfg, images=images, download=download), cfg.test_max_per_class)


# The subset of data.test_max_per_class is drawn once, the same for every data.seed, so runs
# of different seeds are scored on the same images.
_TEST_SUBSET_SEED = 0


def limit_test(source: Source, per_class: int) -> Source:
    """``source`` scored on at most ``per_class`` test images of each class: a fixed,
    class-balanced subset (in the source's order); 0 keeps the whole test split."""
    if per_class <= 0:
        return source
    labels = source.test_labels
    rng = np.random.default_rng(_TEST_SUBSET_SEED)
    keep = []
    for c in range(source.num_classes):
        idx = np.flatnonzero(labels == c)
        if len(idx) > per_class:
            idx = np.sort(rng.choice(idx, size=per_class, replace=False))
        keep.append(idx)
    sel = np.sort(np.concatenate(keep))
    return dataclasses.replace(
        source, test_labels=labels[sel],
        test_images=None if source.test_images is None else source.test_images[sel],
        test_paths=None if source.test_paths is None else tuple(source.test_paths[i]
                                                                 for i in sel))


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
