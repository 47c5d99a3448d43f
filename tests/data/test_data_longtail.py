"""Long-tail counts and the meta/long-tail split (pure numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfm.config import ConfigError
from mfm.data.longtail import class_counts, make_split


def _naive_exp(n_max: int, num_classes: int, imbalance_factor: float) -> list[int]:
    return [math.floor(n_max * imbalance_factor ** (-c / (num_classes - 1)))
            for c in range(num_classes)]


def _is_floor(k: int, n_max: int, imbalance_factor: int, c: int, p: int) -> bool:
    """k == floor(n_max * IF**(-c/p)), decided with integers: k**p * IF**c <= n**p < (k+1)**p..."""
    lhs = n_max ** p
    return k ** p * imbalance_factor ** c <= lhs < (k + 1) ** p * imbalance_factor ** c


# Hand-computed (floor of 4990 * IF ** (-c / 9)); the MWNet protocol's CIFAR-10 head is 4990.
CIFAR10_EXP = {
    200: [4990, 2769, 1537, 853, 473, 262, 145, 80, 44, 24],
    100: [4990, 2991, 1793, 1075, 644, 386, 231, 138, 83, 49],
    50: [4990, 3230, 2091, 1354, 877, 567, 367, 238, 154, 99],
}


@pytest.mark.parametrize("imbalance_factor", [200, 100, 50])
def test_cifar10_exp_counts(imbalance_factor):
    got = class_counts("exp", 4990, 10, imbalance_factor)
    assert got == CIFAR10_EXP[imbalance_factor]
    assert got == _naive_exp(4990, 10, imbalance_factor)
    assert all(_is_floor(k, 4990, imbalance_factor, c, 9) for c, k in enumerate(got))


@pytest.mark.parametrize("imbalance_factor,head,tail,total", [
    (200, [490, 464, 440, 417, 395], [3, 2, 2, 2, 2], 9304),
    (100, [490, 467, 446, 426, 406], [5, 5, 5, 5, 4], 10626),
    (50, [490, 471, 452, 435, 418], [11, 11, 10, 10, 9], 12354),
])
def test_cifar100_exp_counts(imbalance_factor, head, tail, total):
    got = class_counts("exp", 490, 100, imbalance_factor)
    assert len(got) == 100
    assert got[:5] == head and got[-5:] == tail and sum(got) == total
    assert got[-1] == math.floor(490 / imbalance_factor)
    assert got == _naive_exp(490, 100, imbalance_factor)
    assert all(_is_floor(k, 490, imbalance_factor, c, 99) for c, k in enumerate(got))
    assert got == sorted(got, reverse=True)


@pytest.mark.parametrize("imbalance_factor,tail", [(200, 24), (100, 49), (50, 99)])
def test_cifar10_step_counts(imbalance_factor, tail):
    assert class_counts("step", 4990, 10, imbalance_factor) == [4990] * 5 + [tail] * 5


def test_cifar100_step_counts():
    assert class_counts("step", 490, 100, 100) == [490] * 50 + [4] * 50
    assert class_counts("step", 490, 100, 10, step_mu=0.3) == [490] * 30 + [49] * 70
    assert class_counts("step", 490, 10, 10, step_mu=0.25) == [490] * 3 + [49] * 7  # ceil 2.5
    assert class_counts("step", 490, 10, 10, step_mu=1.0) == [490] * 10


@pytest.mark.parametrize("profile", ["exp", "step"])
def test_imbalance_factor_one_is_balanced(profile):
    assert class_counts(profile, 4990, 10, 1.0) == [4990] * 10
    assert class_counts(profile, 490, 100, 1.0) == [490] * 100


def test_single_class():
    assert class_counts("exp", 50, 1, 100) == [50]


def test_exact_floor_without_float_error():
    # 33 / 1.1 is 30 exactly; in floats it is 29.999999999999996.
    assert class_counts("step", 33, 2, 1.1) == [33, 30]
    # 4238 * 2 ** (-2/9) = 3632.99999933...: a true non-integer an epsilon nudge would round up.
    assert class_counts("exp", 4238, 10, 2)[2] == 3632
    # Exact integers stay integers: 10 * 10**-1 = 1, 121 / 1.21 = 100.
    assert class_counts("exp", 10, 10, 10)[-1] == 1
    assert class_counts("exp", 121, 3, 1.21) == [121, 110, 100]


def test_bad_arguments():
    with pytest.raises(ValueError):
        class_counts("linear", 10, 10, 10)
    with pytest.raises(ValueError):
        class_counts("exp", 10, 10, 0.5)


def _balanced_labels(num_classes: int, per_class: int, seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(num_classes), per_class)
    return np.random.default_rng(seed).permutation(labels)


SPEC = dict(profile="exp", imbalance_factor=10.0, meta_per_class=10, seed=0)


def test_cifar10_shaped_split():
    labels = _balanced_labels(10, 5000)
    s = make_split(labels, 10, **{**SPEC, "imbalance_factor": 100.0})
    assert list(s.train_counts) == CIFAR10_EXP[100]
    assert s.meta_counts == (10,) * 10
    assert s.train_idx.dtype == np.int64 and s.meta_idx.dtype == np.int64
    assert np.all(np.diff(s.train_idx) > 0) and np.all(np.diff(s.meta_idx) > 0)
    assert np.bincount(labels[s.train_idx], minlength=10).tolist() == CIFAR10_EXP[100]
    assert np.bincount(labels[s.meta_idx], minlength=10).tolist() == [10] * 10
    assert np.intersect1d(s.train_idx, s.meta_idx).size == 0
    assert s.class_order == tuple(range(10))
    assert len(s.hash) == 64


def test_cifar100_shaped_split_nmax():
    labels = _balanced_labels(100, 500)
    s = make_split(labels, 100, **{**SPEC, "imbalance_factor": 100.0})
    assert s.train_counts[0] == 490 and s.train_counts[-1] == 4
    assert sum(s.train_counts) == 10626


def test_meta_drawn_before_subsampling():
    # Every class, tail included, gives meta_per_class images; a tail class with 4 training
    # images still has 10 in the meta set.
    labels = _balanced_labels(10, 60)
    s = make_split(labels, 10, profile="exp", imbalance_factor=10, meta_per_class=10, seed=3)
    assert s.train_counts == tuple(class_counts("exp", 50, 10, 10))
    assert s.train_counts[-1] == 5
    assert np.bincount(labels[s.meta_idx], minlength=10).tolist() == [10] * 10
    # The meta images of a class are the same whatever the imbalance: drawn first.
    s2 = make_split(labels, 10, profile="step", imbalance_factor=50, meta_per_class=10, seed=3)
    assert np.array_equal(s.meta_idx, s2.meta_idx)
    # The kept training images are a prefix of the same shuffled pool: fewer kept = subset.
    tail_a = set(s.train_idx[labels[s.train_idx] == 9].tolist())   # 5 kept
    tail_b = set(s2.train_idx[labels[s2.train_idx] == 9].tolist())  # 1 kept
    assert len(tail_a) == 5 and len(tail_b) == 1 and tail_b <= tail_a


def test_split_deterministic_and_seeded():
    labels = _balanced_labels(10, 60)
    a = make_split(labels, 10, **SPEC)
    b = make_split(labels, 10, **SPEC)
    assert np.array_equal(a.train_idx, b.train_idx) and np.array_equal(a.meta_idx, b.meta_idx)
    assert a.hash == b.hash
    c = make_split(labels, 10, **{**SPEC, "seed": 1})
    assert not np.array_equal(a.meta_idx, c.meta_idx)
    assert a.hash != c.hash
    d = make_split(labels, 10, **{**SPEC, "imbalance_factor": 5.0})
    assert a.hash != d.hash


def test_hash_ignores_step_mu_for_exp():
    labels = _balanced_labels(10, 60)
    a = make_split(labels, 10, **SPEC)
    b = make_split(labels, 10, **SPEC, step_mu=0.3)
    assert a.hash == b.hash


def test_class_permutation_seeded():
    labels = _balanced_labels(10, 60)
    a = make_split(labels, 10, **SPEC, permute_classes=True)
    b = make_split(labels, 10, **SPEC, permute_classes=True)
    c = make_split(labels, 10, **{**SPEC, "seed": 5}, permute_classes=True)
    assert a.class_order == b.class_order
    assert sorted(a.class_order) == list(range(10))
    assert a.class_order != tuple(range(10)) or c.class_order != tuple(range(10))
    assert a.class_order != c.class_order
    counts = class_counts("exp", 50, 10, 10)
    for rank, label in enumerate(a.class_order):
        assert a.train_counts[label] == counts[rank]
    assert np.bincount(labels[a.train_idx], minlength=10).tolist() == list(a.train_counts)


def test_meta_zero():
    labels = _balanced_labels(5, 20)
    s = make_split(labels, 5, **{**SPEC, "meta_per_class": 0})
    assert s.meta_idx.size == 0 and s.meta_counts == (0,) * 5
    assert s.train_counts[0] == 20


def test_meta_per_class_too_large():
    labels = _balanced_labels(10, 60)
    with pytest.raises(ConfigError) as e:
        make_split(labels, 10, **{**SPEC, "meta_per_class": 60}, dataset="toy")
    assert e.value.key == "data.meta_per_class"
    msg = str(e.value)
    assert "\n" not in msg and "must be <= 59 for toy" in msg and "(got 60)" in msg


def test_imbalance_leaving_empty_class_is_an_error():
    labels = _balanced_labels(10, 20)
    with pytest.raises(ConfigError) as e:
        make_split(labels, 10, **{**SPEC, "imbalance_factor": 11.0})
    assert e.value.key == "data.imbalance_factor" and "\n" not in str(e.value)


def test_uneven_classes_nmax_is_smallest_remainder():
    labels = np.concatenate([np.full(30, 0), np.full(25, 1), np.full(40, 2)])
    s = make_split(labels, 3, profile="exp", imbalance_factor=4, meta_per_class=5, seed=0)
    assert s.train_counts == (20, 10, 5)


def test_head_count_caps_n_max_and_keeps_the_meta_draw():
    labels = np.repeat(np.arange(10), 600)
    full = make_split(labels, 10, profile="exp", imbalance_factor=100, meta_per_class=10,
                      seed=3)
    small = make_split(labels, 10, profile="exp", imbalance_factor=100, meta_per_class=10,
                       seed=3, head_count=200)
    assert full.train_counts[0] == 590
    assert small.train_counts == tuple(class_counts("exp", 200, 10, 100))
    assert small.train_counts[0] == 200 and small.train_counts[-1] == 2
    np.testing.assert_array_equal(small.meta_idx, full.meta_idx)
    assert small.hash != full.hash
    # a cap above what the source has changes nothing but is recorded
    big = make_split(labels, 10, profile="exp", imbalance_factor=100, meta_per_class=10,
                     seed=3, head_count=10_000)
    assert big.train_counts == full.train_counts
    with pytest.raises(ConfigError, match="data.head_count"):
        make_split(labels, 10, profile="exp", imbalance_factor=100, meta_per_class=10,
                   seed=3, head_count=-1)


def test_val_split_is_balanced_held_out_and_leaves_meta_alone():
    labels = np.repeat(np.arange(10), 300)
    base = make_split(labels, 10, profile="exp", imbalance_factor=10, meta_per_class=10,
                      seed=1)
    s = make_split(labels, 10, profile="exp", imbalance_factor=10, meta_per_class=10, seed=1,
                   val_per_class=20)
    assert base.val_idx.size == 0
    assert np.bincount(labels[s.val_idx], minlength=10).tolist() == [20] * 10
    np.testing.assert_array_equal(s.meta_idx, base.meta_idx)
    for a, b in ((s.val_idx, s.train_idx), (s.val_idx, s.meta_idx)):
        assert np.intersect1d(a, b).size == 0
    assert s.train_counts[0] == 270  # n_max = 300 - 10 meta - 20 val
    assert s.hash != base.hash
    with pytest.raises(ConfigError, match="data.val_per_class"):
        make_split(labels, 10, profile="exp", imbalance_factor=10, meta_per_class=10, seed=1,
                   val_per_class=290)
