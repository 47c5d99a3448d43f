"""Device-resident loaders, batched augmentation, build_data (digits and imagefolder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mfm.config import DataConfig
from mfm.data import build_data, preview_counts
from mfm.data.loader import DeviceLoader, augment_batch, augmentation_for, channel_stats, crop_batch

CPU = torch.device("cpu")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _ids_loader(n: int = 23, batch_size: int = 5, **kw) -> DeviceLoader:
    """A loader whose labels are the sample ids, over random uint8 images."""
    images = torch.randint(0, 256, (n, 2, 6, 6), dtype=torch.uint8, generator=_gen(9))
    kw.setdefault("shuffle", True)
    kw.setdefault("generator", _gen(0))
    return DeviceLoader(images, torch.arange(n), batch_size, mean=(0.5, 0.5), std=(0.25, 0.25),
                        **kw)


# ---------------------------------------------------------------- crop / augment

def test_crop_batch_matches_hand_made_crop():
    x = torch.arange(3 * 2 * 6 * 7, dtype=torch.int64).reshape(3, 2, 6, 7).to(torch.uint8)
    oy = torch.tensor([0, 2, 1])
    ox = torch.tensor([3, 0, 1])
    got = crop_batch(x, oy, ox, 4, 4)
    assert got.shape == (3, 2, 4, 4) and got.dtype == torch.uint8
    for n in range(3):
        assert torch.equal(got[n], x[n, :, oy[n]:oy[n] + 4, ox[n]:ox[n] + 4])
    # Sample 1 at (2, 0): its top-left pixel of channel 1 is x[1, 1, 2, 0].
    assert got[1, 1, 0, 0] == x[1, 1, 2, 0]


def test_pad_crop_is_a_real_shift():
    # Offset (pad, pad) is the identity; (0, 0) shifts the image down-right by pad, zero-filled.
    x = torch.randint(1, 256, (2, 1, 5, 5), dtype=torch.uint8, generator=_gen(1))
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    same = crop_batch(xp, torch.tensor([2, 2]), torch.tensor([2, 2]), 5, 5)
    assert torch.equal(same, x)
    shifted = crop_batch(xp, torch.tensor([0, 0]), torch.tensor([0, 0]), 5, 5)
    assert torch.equal(shifted[:, :, 2:, 2:], x[:, :, :3, :3])
    assert (shifted[:, :, :2, :] == 0).all() and (shifted[:, :, :, :2] == 0).all()


def test_augment_keeps_shape_dtype_and_shifts():
    x = torch.full((64, 3, 8, 8), 255, dtype=torch.uint8)
    out = augment_batch(x, pad=2, flip=True, generator=_gen(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    zeros = (out == 0).flatten(1).any(1)
    assert zeros.any() and (~zeros).any()  # some samples shifted, some (offset = pad) not
    assert set(out.unique().tolist()) <= {0, 255}


def test_flip_is_per_sample():
    x = torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8, generator=_gen(2))
    out = augment_batch(x, pad=0, flip=True, generator=_gen(0))
    flipped = [torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert any(flipped) and any(kept)


def test_augmentation_resolution():
    assert augmentation_for(DataConfig(name="digits"), 8) == (1, False)
    assert augmentation_for(DataConfig(name="mnist"), 28) == (3, False)
    assert augmentation_for(DataConfig(name="fashion-mnist"), 28) == (3, True)
    assert augmentation_for(DataConfig(name="cifar10"), 32) == (4, True)
    assert augmentation_for(DataConfig(name="cifar10", augment="none"), 32) == (0, False)
    assert augmentation_for(DataConfig(name="digits", augment="crop_flip", pad=2), 8) == (2, True)
    assert augmentation_for(DataConfig(name="cifar100", augment="crop"), 32) == (4, False)


# ---------------------------------------------------------------- DeviceLoader

def test_batches_shapes_and_len():
    loader = _ids_loader(23, 5, pad=1, flip=True)
    batches = list(loader)
    assert len(loader) == len(batches) == 5
    assert [b[0].shape[0] for b in batches] == [5, 5, 5, 5, 3]
    x, y = batches[0]
    assert x.shape == (5, 2, 6, 6) and x.dtype == torch.float32 and y.dtype == torch.int64
    dropped = _ids_loader(23, 5, drop_last=True)
    assert len(dropped) == 4 and len(list(dropped)) == 4


def test_every_index_once_per_epoch_and_reshuffled():
    loader = _ids_loader(23, 5, pad=1, flip=True)
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    for ids in epochs:
        assert torch.equal(ids.sort().values, torch.arange(23))
    assert not torch.equal(epochs[0], epochs[1])


def test_no_shuffle_no_augment_is_plain_normalisation():
    loader = _ids_loader(23, 5, shuffle=False, generator=None)
    xs = torch.cat([x for x, _ in loader])
    expected = (loader.images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(xs, expected, atol=1e-6)
    assert torch.equal(torch.cat([y for _, y in loader]), torch.arange(23))


def test_generator_required_for_randomness():
    with pytest.raises(ValueError, match="generator"):
        _ids_loader(shuffle=True, generator=None)


def test_same_seed_same_batches_and_resume():
    a, b = _ids_loader(pad=1, flip=True), _ids_loader(pad=1, flip=True)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # Resume: state after epoch 1 reproduces epoch 2.
    run = _ids_loader(pad=1, flip=True)
    list(run)
    state = run.state_dict()
    epoch2 = [(x.clone(), y.clone()) for x, y in run]
    resumed = _ids_loader(pad=1, flip=True, generator=_gen(123))
    resumed.load_state_dict(state)
    for (x1, y1), (x2, y2) in zip(epoch2, resumed):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_channel_stats_exact():
    x = np.random.default_rng(0).integers(0, 256, (20, 3, 5, 5)).astype(np.uint8)
    mean, std = channel_stats(x)
    f = x.astype(np.float64) / 255
    assert np.allclose(mean, f.mean(axis=(0, 2, 3)), atol=1e-12)
    assert np.allclose(std, f.std(axis=(0, 2, 3)), atol=1e-12)


# ---------------------------------------------------------------- build_data

def test_build_data_digits():
    cfg = DataConfig(name="digits", imbalance_factor=10)
    data = build_data(cfg, batch_size=64, eval_batch_size=200, device=CPU, seed=0)
    preview = preview_counts(cfg)
    assert data.train_counts == preview["train"] and data.split_hash == preview["split_hash"]
    assert data.test_counts == [50] * 10 and data.meta_counts == [10] * 10
    assert data.num_train == sum(data.train_counts) == 461
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 8)
    assert data.meta_x.shape == (100, 1, 8, 8) and data.meta_x.dtype == torch.float32
    assert torch.bincount(data.meta_y, minlength=10).tolist() == [10] * 10
    ys = torch.cat([y for _, y in data.train])
    assert torch.bincount(ys, minlength=10).tolist() == data.train_counts
    xs = torch.cat([x for x, _ in data.test])
    assert xs.shape == (500, 1, 8, 8)
    assert len(data.train) == 8 and len(data.test) == 3
    assert data.train.pad == 1 and not data.train.flip
    # Normalised with the long-tailed training set's statistics.
    plain = torch.cat([(x * data.std[0] + data.mean[0]) for x, _ in data.test])
    assert plain.min() >= -1e-6 and plain.max() <= 1 + 1e-6
    state = data.loader_state()
    data.load_loader_state(state)


def test_build_data_meta_zero():
    cfg = DataConfig(name="digits", meta_per_class=0)
    data = build_data(cfg, batch_size=64, eval_batch_size=200, device=CPU, seed=0)
    assert data.meta_x.shape == (0, 1, 8, 8) and data.meta_y.shape == (0,)
    assert data.train_counts[0] == 124


def test_build_data_seed_controls_order_not_split():
    cfg = DataConfig(name="digits")
    a = build_data(cfg, batch_size=64, eval_batch_size=200, device=CPU, seed=0)
    b = build_data(cfg, batch_size=64, eval_batch_size=200, device=CPU, seed=1)
    assert a.split_hash == b.split_hash
    assert not torch.equal(next(iter(a.train))[1], next(iter(b.train))[1])


# ---------------------------------------------------------------- imagefolder

def _write_pngs(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    layout = {"train": {"cat": 8, "dog": 6, "emu": 5}, "test": {"cat": 2, "dog": 2, "emu": 2}}
    for split, classes in layout.items():
        for c, n in classes.items():
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
                mode_img = Image.fromarray(arr)
                if i % 2:
                    mode_img = mode_img.convert("L")  # grey files become RGB
                mode_img.save(d / f"{i}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    _write_pngs(root)
    return root


def _folder_batches(folder: Path, workers: int):
    cfg = DataConfig(name="imagefolder", root=str(folder), image_size=8, meta_per_class=1,
                     imbalance_factor=2, num_workers=workers)
    data = build_data(cfg, batch_size=4, eval_batch_size=5, device=CPU, seed=0)
    train = [(x.clone(), y.clone()) for x, y in data.train]
    test = [(x.clone(), y.clone()) for x, y in data.test]
    return data, train, test


def test_imagefolder_build_data_workers_agree(folder):
    data0, train0, test0 = _folder_batches(folder, 0)
    assert data0.classes == ["cat", "dog", "emu"]
    assert data0.train_counts == [4, 2, 2] and data0.meta_counts == [1, 1, 1]
    assert data0.test_counts == [2, 2, 2]
    assert data0.meta_x.shape == (3, 3, 8, 8)
    assert all(x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 for x, _ in train0)
    ys = torch.cat([y for _, y in train0])
    assert torch.bincount(ys, minlength=3).tolist() == [4, 2, 2]
    assert torch.cat([y for _, y in test0]).tolist() == [0, 0, 1, 1, 2, 2]
    data2, train2, test2 = _folder_batches(folder, 2)
    assert data2.split_hash == data0.split_hash and data2.mean == data0.mean
    for (xa, ya), (xb, yb) in zip(train0 + test0, train2 + test2):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # A second epoch through the persistent workers is a new order over the same images.
    again = torch.cat([y for _, y in data2.train])
    assert sorted(again.tolist()) == sorted(ys.tolist())
