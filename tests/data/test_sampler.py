"""``data.sampler``: which training images an epoch visits (instance, class_balanced, sqrt),
drawn from the train loader's seeded generator, in both loaders, resumable exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_data

from mfm.config import DataConfig
from mfm.data import build_data
from mfm.data.loader import DeviceLoader, FolderLoader, epoch_order, sampling_weights

CPU = torch.device("cpu")
# A 10-class long tail (floor(500 * 100 ** (-c / 9))): 1,441 training images, head 500, tail 5.
COUNTS = [500, 299, 178, 106, 63, 37, 22, 13, 7, 5]
LABELS = np.repeat(np.arange(10), COUNTS)


def _loader(sampler: str | None, *, seed: int = 0, batch_size: int = 64, pad: int = 0,
            flip: bool = False, labels: np.ndarray = LABELS) -> DeviceLoader:
    """A DeviceLoader over 1x2x2 images whose first pixel is the image's index mod 256;
    ``sampler=None`` leaves the argument out (the default)."""
    n = labels.size
    images = (torch.arange(n) % 256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2)
    kw = {} if sampler is None else {"sampler": sampler}
    return DeviceLoader(images.contiguous(), torch.from_numpy(labels), batch_size, shuffle=True,
                        pad=pad, flip=flip, mean=[0.0], std=[1.0],
                        generator=torch.Generator().manual_seed(seed), **kw)


def _epochs(loader, k: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``k`` epochs as (all x, all y) of each."""
    out = []
    for _ in range(k):
        batches = [(x.clone(), y.clone()) for x, y in loader]
        out.append((torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])))
    return out


def _frequencies(sampler: str, epochs: int = 20) -> np.ndarray:
    loader = _loader(sampler)
    ys = [y for _, y in _epochs(loader, epochs)]
    for y in ys:  # every epoch is as long as instance's
        assert y.numel() == LABELS.size
    return np.bincount(torch.cat(ys).numpy(), minlength=10)


def _within(counts: np.ndarray, shares: np.ndarray, sigmas: float = 5.0) -> np.ndarray:
    """Per class: is the drawn count within ``sigmas`` binomial standard deviations of its
    expected share? (Each class fails by chance with p < 1e-6.)"""
    total = counts.sum()
    expected = total * shares
    sd = np.sqrt(total * shares * (1 - shares))
    return np.abs(counts - expected) <= sigmas * sd


# ---------------------------------------------------------------- instance: today's order

def test_instance_is_the_default_and_unchanged():
    default, explicit = _loader(None), _loader("instance")
    assert default.sampler == "instance"
    ref = torch.Generator().manual_seed(0)
    for (xd, yd), (xe, ye) in zip(_epochs(default, 3), _epochs(explicit, 3)):
        assert torch.equal(xd, xe) and torch.equal(yd, ye)
        # bit-identical with the loader before data.sampler: one randperm per epoch
        assert torch.equal(yd, torch.from_numpy(LABELS)[torch.randperm(LABELS.size,
                                                                        generator=ref)])


def test_instance_default_through_build_data():
    _, default = tiny_data()
    _, explicit = tiny_data(["data.sampler=instance"])
    assert default.train.sampler == explicit.train.sampler == "instance"
    for _ in range(2):
        for (xd, yd), (xe, ye) in zip(default.train, explicit.train, strict=True):
            assert torch.equal(xd, xe) and torch.equal(yd, ye)


# ---------------------------------------------------------------- the draws

def test_weights():
    y = np.array([0, 0, 0, 0, 1, 2, 2])
    assert sampling_weights(y, "instance") is None
    cb = sampling_weights(y, "class_balanced")
    assert cb.dtype == torch.float64
    assert cb.tolist() == pytest.approx([0.25] * 4 + [1.0] + [0.5] * 2)
    assert sampling_weights(y, "sqrt").tolist() == pytest.approx([0.5] * 4 + [1.0] +
                                                                  [2 ** -0.5] * 2)
    # a class's total weight: 1 each (class_balanced), sqrt(n_c) (sqrt)
    assert np.bincount(y, weights=sampling_weights(y, "sqrt").numpy()) == \
        pytest.approx([2.0, 1.0, math.sqrt(2)])
    with pytest.raises(ValueError, match="unknown sampler"):
        sampling_weights(y, "balanced")


def test_class_balanced_frequencies_are_uniform():
    counts = _frequencies("class_balanced")
    assert _within(counts, np.full(10, 0.1)).all(), counts.tolist()
    # the bound can fail: instance's frequencies (the long tail) are far outside it
    assert not _within(_frequencies("instance"), np.full(10, 0.1)).any()


def test_sqrt_frequencies_follow_the_square_root_of_the_counts():
    shares = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()
    counts = _frequencies("sqrt")
    assert _within(counts, shares).all(), (counts.tolist(), (shares * counts.sum()).tolist())
    assert not _within(_frequencies("class_balanced"), shares).all()


def test_class_balanced_draws_every_image_of_a_class_alike():
    g = torch.Generator().manual_seed(0)
    w = sampling_weights(LABELS, "class_balanced")
    drawn = np.bincount(torch.cat([epoch_order(LABELS.size, w, g) for _ in range(20)]).numpy(),
                        minlength=LABELS.size)
    for c in (0, 9):  # the head's 500 images and the tail's 5, each alike within its class
        hits = drawn[LABELS == c]
        assert _within(hits, np.full(hits.size, 1 / hits.size)).all(), (c, hits.tolist())


def test_order_is_epoch_order_from_the_loader_generator():
    loader = _loader("sqrt", batch_size=100)
    ref = torch.Generator().manual_seed(0)
    w = sampling_weights(LABELS, "sqrt")
    for _, y in _epochs(loader, 2):
        assert torch.equal(y, torch.from_numpy(LABELS)[epoch_order(LABELS.size, w, ref)])
    assert len(loader) == math.ceil(LABELS.size / 100) == len(_loader("instance",
                                                                      batch_size=100))


def test_a_sampler_needs_labels_and_shuffling():
    images = torch.zeros((4, 1, 2, 2), dtype=torch.uint8)
    with pytest.raises(ValueError, match="shuffle"):
        DeviceLoader(images, torch.zeros(4), 2, shuffle=False, mean=[0.0], std=[1.0],
                     sampler="sqrt")


# ---------------------------------------------------------------- resume

@pytest.mark.parametrize("sampler", ["instance", "class_balanced", "sqrt"])
def test_resume_continues_the_same_epochs(sampler):
    run = _loader(sampler, pad=1, flip=True)
    _epochs(run, 2)
    state = run.state_dict()
    after = _epochs(run, 2)
    resumed = _loader(sampler, seed=123, pad=1, flip=True)
    resumed.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(after, _epochs(resumed, 2), strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_resume_through_build_data():
    _, data = tiny_data(["data.sampler=class_balanced"])
    list(data.train)
    state = data.loader_state()
    after = [y.clone() for _, y in data.train]
    _, again = tiny_data(["data.sampler=class_balanced", "seed=5"])
    again.load_loader_state(state)
    assert torch.equal(torch.cat(after), torch.cat([y for _, y in again.train]))


def test_build_data_passes_the_sampler():
    _, inst = tiny_data(["data.imbalance_factor=20"])
    _, bal = tiny_data(["data.imbalance_factor=20", "data.sampler=class_balanced"])
    assert bal.train.sampler == "class_balanced" and len(bal.train) == len(inst.train)
    drawn = np.bincount(torch.cat([y for _ in range(5) for _, y in bal.train]).numpy(),
                        minlength=bal.num_classes)
    assert _within(drawn, np.full(bal.num_classes, 1 / bal.num_classes)).all()
    assert drawn[0] < 5 * bal.train_counts[0]  # fewer head draws than 5 epochs of instance


# ---------------------------------------------------------------- imagefolder

def _write_pngs(root: Path, counts: dict[str, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, n in counts.items():
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n if split == "train" else 1):
                Image.fromarray(rng.integers(0, 256, (6, 6, 3)).astype(np.uint8)).save(
                    d / f"{i}.png")


def test_folder_loader_honours_the_sampler(tmp_path):
    _write_pngs(tmp_path, {"ant": 6, "bee": 6, "cow": 6})
    cfg = DataConfig(name="imagefolder", root=str(tmp_path), image_size=6, meta_per_class=0,
                     imbalance_factor=3, num_workers=0, sampler="class_balanced")
    data = build_data(cfg, batch_size=4, eval_batch_size=4, device=CPU, seed=0)
    assert isinstance(data.train, FolderLoader) and data.train.sampler == "class_balanced"
    assert sum(y.numel() for _, y in data.train) == sum(data.train_counts)
    # Without augmentation the generator draws only the orders: the labels of each epoch are
    # those of epoch_order's draws.
    paths = [str(tmp_path / "train" / c / f"{i}.png") for c, n in zip(("ant", "bee", "cow"),
                                                                       (6, 3, 2)) for i in range(n)]
    labels = np.repeat(np.arange(3), [6, 3, 2])
    loader = FolderLoader(paths, labels, 6, 4, device=CPU, num_workers=0, shuffle=True,
                          mean=[0.0] * 3, std=[1.0] * 3,
                          generator=torch.Generator().manual_seed(7), sampler="class_balanced")
    ref = torch.Generator().manual_seed(7)
    w = sampling_weights(labels, "class_balanced")
    for _ in range(3):
        y = torch.cat([y for _, y in loader])
        assert torch.equal(y, torch.from_numpy(labels)[epoch_order(labels.size, w, ref)])
    assert len(loader) == 3


def test_test_max_per_class_is_a_fixed_balanced_subset():
    """data.test_max_per_class: the same class-balanced test images whatever data.seed."""
    from mfm.config import load_config
    from mfm.data.sources import load_source, preview_counts

    a = load_config(None, ["data.name=fashion-mnist", "data.test_max_per_class=30",
                           "data.seed=1"]).data
    b = load_config(None, ["data.name=fashion-mnist", "data.test_max_per_class=30",
                           "data.seed=2"]).data
    sa, sb = load_source(a, download=False), load_source(b, download=False)
    assert np.bincount(sa.test_labels).tolist() == [30] * 10
    assert np.array_equal(sa.test_images, sb.test_images)
    assert preview_counts(a)["test"] == [30] * 10
    full = load_source(load_config(None, ["data.name=fashion-mnist"]).data, download=False)
    assert len(full.test_labels) == 10000
