"""Long-tail construction: profiles -> per-class counts -> index sets. Pure numpy, no torch.

The protocol is Meta-Weight-Net's (see docs: METHOD.md, "Protocol"): a balanced meta set is
drawn per class with a seeded generator *before* the long-tail subsampling and removed from the
training pool; the per-class count n_max left after that is the head count of the profile.

Counts are computed exactly. ``floor(n_max * IF ** (-c / (C - 1)))`` in floating point can land
just below an integer that the exact value reaches (e.g. 10 * 10 ** -1 = 1 exactly, but a float
power may give 0.99999...); an epsilon nudge fixes that case but wrongly rounds up true values
that sit within epsilon below an integer (4238 * 2 ** (-2/9) = 3632.99999933...). Instead the
float estimate is corrected with integer arithmetic: k = floor(v) is the largest k with
k ** (C-1) * IF ** c <= n_max ** (C-1). IF and mu are taken at the decimal value they print as
(``Fraction(repr(x))``), so IF = 1.1 means 11/10 and mu = 0.1 means 1/10 (not the binary float
slightly above it, which would make ceil(10 * 0.1) = 2).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from mfm.config import ConfigError

__all__ = ["META_SOURCES", "PROFILES", "Split", "class_counts", "make_split", "resample_meta"]

PROFILES = ("exp", "step")
META_SOURCES = ("heldout", "resampled")
# Tags the seed of each resampled meta draw: a stream distinct from make_split's.
_RESAMPLE_STREAM = 0x6D657461


def _dec(x: float) -> Fraction:
    """The decimal value a float prints as, exactly (100.0 -> 100, 0.1 -> 1/10)."""
    return Fraction(repr(float(x)))


def _exp_count(n_max: int, factor: Fraction, c: int, p: int) -> int:
    """floor(n_max * factor ** (-c / p)), exactly."""
    a, b = factor.numerator, factor.denominator  # factor = a / b
    lhs_scale: int = a ** c                      # k**p * a**c <= n**p * b**c
    rhs: int = n_max ** p * b ** c

    def fits(k: int) -> bool:
        lhs: int = k ** p * lhs_scale
        return lhs <= rhs

    k: int = max(0, math.floor(n_max * float(factor) ** (-c / p)))
    while k > 0 and not fits(k):
        k -= 1
    while fits(k + 1):
        k += 1
    return k


def class_counts(profile: str, n_max: int, num_classes: int, imbalance_factor: float,
                 step_mu: float = 0.5) -> list[int]:
    """Training images per class by rank (rank 0 = head).

    exp:  n_c = floor(n_max * IF ** (-c / (C - 1))), c = 0..C-1 (C = 1 gives [n_max]).
    step: the first ceil(C * mu) ranks keep n_max, the rest floor(n_max / IF).

    >>> class_counts("exp", 4990, 10, 100)
    [4990, 2991, 1793, 1075, 644, 386, 231, 138, 83, 49]
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {' | '.join(PROFILES)} (got {profile!r})")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1 (got {num_classes})")
    if n_max < 0:
        raise ValueError(f"n_max must be >= 0 (got {n_max})")
    if not imbalance_factor >= 1.0:
        raise ValueError(f"imbalance_factor must be >= 1 (got {imbalance_factor})")
    factor = _dec(imbalance_factor)
    if profile == "exp":
        if num_classes == 1:
            return [n_max]
        p = num_classes - 1
        return [_exp_count(n_max, factor, c, p) for c in range(num_classes)]
    if not 0.0 < step_mu <= 1.0:
        raise ValueError(f"step_mu must be in (0, 1] (got {step_mu})")
    n_head = math.ceil(num_classes * _dec(step_mu))
    n_tail = math.floor(n_max / factor)
    return [n_max] * n_head + [n_tail] * (num_classes - n_head)


@dataclass(frozen=True, eq=False)
class Split:
    """A long-tailed training set and a balanced meta set, as indices into the source's
    training set (sorted int64). Counts are indexed by class label; ``class_order[r]`` is the
    label at rank r (rank 0 = head). With ``meta_source`` resampled ``meta_idx`` is empty
    (the meta sets are drawn from ``train_idx`` during training: :func:`resample_meta`) and
    ``meta_counts`` are the per-class sizes of each draw. Compare splits by ``hash`` (sha256
    of the spec and the index bytes); ``==`` is identity, as numpy fields have no truth
    value."""

    train_idx: np.ndarray
    meta_idx: np.ndarray
    train_counts: tuple[int, ...]
    meta_counts: tuple[int, ...]
    class_order: tuple[int, ...]
    hash: str
    val_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    meta_source: str = "heldout"


def _split_hash(spec: dict[str, Any], train_idx: np.ndarray, meta_idx: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(spec, sort_keys=True).encode())
    h.update(b"train")
    h.update(train_idx.astype("<i8").tobytes())
    h.update(b"meta")
    h.update(meta_idx.astype("<i8").tobytes())
    return h.hexdigest()


def make_split(labels: np.ndarray, num_classes: int, *, profile: str, imbalance_factor: float,
               meta_per_class: int, seed: int, step_mu: float = 0.5,
               permute_classes: bool = False, head_count: int = 0,
               val_per_class: int = 0, dataset: str = "data",
               meta_source: str = "heldout") -> Split:
    """The long-tailed split of a balanced (or any) labelled training set.

    A pure function of (labels, spec, seed), so every method sees the same indices.
    rng = default_rng(seed); per class in label order its indices are shuffled with rng and
    the first ``meta_per_class`` go to the meta set and the next ``val_per_class`` to a
    balanced validation set (held out of training, for model selection without the test
    split); n_max = the smallest remainder, capped at
    ``head_count`` when that is > 0 (a smaller study of the same shape); the class
    order is rng.permutation(C) when ``permute_classes`` (else identity), drawn after the
    shuffles; the class at rank r keeps the first counts[r] of its remaining shuffled indices.
    ``dataset`` only names the data in error messages.

    ``meta_source`` resampled: nothing is held out for a meta set. The same draws are made
    (so the validation images, the class order and the shuffles are those of heldout), but each
    class's would-be meta images go back to the end of its pool, so n_max grows by at most
    ``meta_per_class`` and every class keeps a prefix of that pool: the training set of
    heldout plus what the profile's counts at the larger n_max let in. The meta sets are drawn
    from ``train_idx`` later (:func:`resample_meta`); the spec records ``meta_source``.
    """
    labels = _checked_labels(labels, num_classes, meta_per_class=meta_per_class,
                             val_per_class=val_per_class, dataset=dataset,
                             meta_source=meta_source)
    rng = np.random.default_rng(seed)
    pools, meta_parts, val_parts = _draw_pools(labels, num_classes, rng, meta_per_class,
                                               val_per_class, meta_source)
    n_max = _head(pools, head_count)
    order = (rng.permutation(num_classes) if permute_classes
             else np.arange(num_classes))
    counts = _profile_counts(profile, n_max, num_classes, imbalance_factor, step_mu, dataset)
    train_idx, train_counts = _take_train(pools, order, counts)
    meta_idx = np.sort(np.concatenate(meta_parts)).astype(np.int64)
    val_idx = np.sort(np.concatenate(val_parts)).astype(np.int64)
    spec = _spec(num_classes, profile=profile, imbalance_factor=imbalance_factor,
                 meta_per_class=meta_per_class, seed=seed, permute_classes=permute_classes,
                 step_mu=step_mu, head_count=head_count, n_max=n_max,
                 val_per_class=val_per_class, meta_source=meta_source)
    h = _split_hash(spec, train_idx, meta_idx)
    if val_per_class:
        h = hashlib.sha256((h + "val").encode() + val_idx.astype("<i8").tobytes()).hexdigest()
    meta_counts = ([int(meta_per_class)] * num_classes if meta_source == "heldout"
                   else [min(int(meta_per_class), n) for n in train_counts])
    return Split(train_idx=train_idx, meta_idx=meta_idx,
                 train_counts=tuple(train_counts),
                 meta_counts=tuple(meta_counts),
                 class_order=tuple(int(c) for c in order), hash=h, val_idx=val_idx,
                 meta_source=meta_source)


def _checked_labels(labels: np.ndarray, num_classes: int, *, meta_per_class: int,
                    val_per_class: int, dataset: str, meta_source: str) -> np.ndarray:
    """``labels`` as an array after checking the split can be drawn from them: every class
    has images, and more than the meta and validation sets take."""
    if meta_source not in META_SOURCES:
        raise ValueError(f"meta_source must be one of {' | '.join(META_SOURCES)} "
                         f"(got {meta_source!r})")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (got shape {labels.shape})")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) "
                         f"(got {labels.min()}..{labels.max()})")
    sizes = np.bincount(labels.astype(np.int64), minlength=num_classes)
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        raise ConfigError("data.name", f"{dataset}: class {int(empty[0])} has no training "
                                       "images")
    smallest = int(sizes.min())
    if meta_per_class < 0 or meta_per_class >= smallest:
        raise ConfigError("data.meta_per_class",
                          f"must be <= {smallest - 1} for {dataset} (smallest class has "
                          f"{smallest} images) (got {meta_per_class})")
    if val_per_class < 0 or meta_per_class + val_per_class >= smallest:
        raise ConfigError("data.val_per_class",
                          f"must be in 0..{max(0, smallest - 1 - max(meta_per_class, 0))} for "
                          f"{dataset} with meta_per_class = {meta_per_class} (smallest class has "
                          f"{smallest} images) (got {val_per_class})")
    return labels


def _draw_pools(labels: np.ndarray, num_classes: int, rng: np.random.Generator,
                meta_per_class: int, val_per_class: int, meta_source: str
                ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(pools, meta parts, validation parts), one of each per class in label order: the
    class's indices shuffled with ``rng``; the first ``meta_per_class`` are the meta part
    (heldout) or go back to the end of the pool (resampled), the next ``val_per_class`` are
    the validation part, the rest the pool the training set is taken from."""
    pools = []
    meta_parts = []
    val_parts = []
    held = meta_per_class + val_per_class
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        val_parts.append(idx[meta_per_class:held])
        if meta_source == "heldout":
            meta_parts.append(idx[:meta_per_class])
            pools.append(idx[held:])
        else:
            meta_parts.append(idx[:0])
            pools.append(np.concatenate([idx[held:], idx[:meta_per_class]]))
    return pools, meta_parts, val_parts


def _head(pools: list[np.ndarray], head_count: int) -> int:
    """n_max: the smallest pool, capped at ``head_count`` when that is > 0."""
    n_max = min(p.size for p in pools)
    if head_count < 0:
        raise ConfigError("data.head_count", f"must be >= 0 (got {head_count})")
    if head_count:
        n_max = min(n_max, head_count)
    return n_max


def _profile_counts(profile: str, n_max: int, num_classes: int, imbalance_factor: float,
                    step_mu: float, dataset: str) -> list[int]:
    """The profile's counts by rank; every class must keep at least one training image."""
    counts = class_counts(profile, n_max, num_classes, imbalance_factor, step_mu)
    if min(counts) == 0:
        raise ConfigError("data.imbalance_factor",
                          f"must be <= {n_max} for {dataset} with this meta split (n_max = "
                          f"{n_max}): the rarest class would keep no training image "
                          f"(got {imbalance_factor:g})")
    return counts


def _take_train(pools: list[np.ndarray], order: np.ndarray, counts: list[int]
                ) -> tuple[np.ndarray, list[int]]:
    """(sorted training indices, counts by class label): the class at rank r keeps the first
    counts[r] of its pool."""
    train_counts = [0] * len(pools)
    train_parts = []
    for rank, c in enumerate(order.tolist()):
        train_counts[c] = counts[rank]
        train_parts.append(pools[c][:counts[rank]])
    return np.sort(np.concatenate(train_parts)).astype(np.int64), train_counts


def _spec(num_classes: int, *, profile: str, imbalance_factor: float, meta_per_class: int,
          seed: int, permute_classes: bool, step_mu: float, head_count: int, n_max: int,
          val_per_class: int, meta_source: str) -> dict[str, Any]:
    """What the split's hash covers besides its indices. Options at their defaults are
    absent, so splits made before those options existed keep their hash."""
    spec: dict[str, Any] = {
        "num_classes": int(num_classes), "profile": profile,
        "imbalance_factor": float(imbalance_factor), "meta_per_class": int(meta_per_class),
        "seed": int(seed), "permute_classes": bool(permute_classes)}
    if profile == "step":
        spec["step_mu"] = float(step_mu)
    # absent when 0, so splits made before these options keep their hash
    if head_count:
        spec["head_count"] = int(n_max)
    if val_per_class:
        spec["val_per_class"] = int(val_per_class)
    if meta_source != "heldout":  # absent for heldout, so those splits keep their hash
        spec["meta_source"] = meta_source
    return spec


def resample_meta(train_labels: np.ndarray, num_classes: int, meta_per_class: int, *, seed: int,
                  epoch: int) -> np.ndarray:
    """The meta set drawn at ``epoch`` (``data.meta_source=resampled``): sorted positions into
    the training set whose labels are ``train_labels``, min(meta_per_class, the class's count)
    per class. A pure function of (labels, meta_per_class, seed, epoch): the draw uses
    default_rng([seed, epoch, tag]), so a resumed run redraws exactly the sets of an
    uninterrupted one. Per class in label order, its positions are permuted and the first ones
    taken."""
    labels = np.asarray(train_labels)
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0 (got {epoch})")
    rng = np.random.default_rng([int(seed), int(epoch), _RESAMPLE_STREAM])
    parts = []
    for c in range(num_classes):
        pos = np.flatnonzero(labels == c)
        parts.append(pos[rng.permutation(pos.size)[:max(meta_per_class, 0)]])
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)
