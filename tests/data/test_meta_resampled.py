"""data.meta_source=resampled: no meta images held out; class-balanced meta sets drawn from the
long-tailed training images, redrawn every data.meta_resample_epochs epochs, deterministically
in (data.seed, epoch). heldout (the default) keeps its splits and hashes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfm.config import ConfigError, DataConfig, config_from_dict, config_to_dict, load_config
from mfm.data import build_data, make_split
from mfm.data.longtail import resample_meta
from mfm.data.sources import preview_counts
from mfm.engine import Recorder, fit, seed_everything
from mfm.methods._meta import MetaMethod

CPU = torch.device("cpu")
SPEC = dict(profile="exp", imbalance_factor=10.0, meta_per_class=10, seed=0)
# The hashes these heldout splits had before data.meta_source existed.
HELDOUT_HASHES = {
    "plain": "f228b0a39a2cef5f6fad4363a596826cfd2a0cd8b2efa5c75860d100b3ffffbe",
    "val_head": "d6426a86a409b7e1855706d620795eaf1ad8875d5e7497945a935a1d3b3d864c",
    "digits_default": "da567a4299abc99d242a113cb5dd07d47ad8f73795d142862399e9427078aed0",
}


def labels60():
    return np.repeat(np.arange(10), 60)


def test_heldout_splits_hash_as_before():
    labels = labels60()
    assert make_split(labels, 10, **SPEC).hash == HELDOUT_HASHES["plain"]
    assert make_split(labels, 10, **SPEC, meta_source="heldout").hash == HELDOUT_HASHES["plain"]
    assert make_split(labels, 10, **SPEC, val_per_class=5,
                      head_count=40).hash == HELDOUT_HASHES["val_head"]
    assert preview_counts(DataConfig())["split_hash"] == HELDOUT_HASHES["digits_default"]


def test_resampled_split_holds_nothing_out_but_validation():
    labels = labels60()
    held = make_split(labels, 10, **SPEC, val_per_class=5, permute_classes=True)
    res = make_split(labels, 10, **SPEC, val_per_class=5, permute_classes=True,
                     meta_source="resampled")
    assert res.meta_idx.size == 0 and res.meta_source == "resampled"
    assert res.hash != held.hash
    # same draws: the same validation images and class order as heldout
    np.testing.assert_array_equal(res.val_idx, held.val_idx)
    assert res.class_order == held.class_order
    assert np.intersect1d(res.val_idx, res.train_idx).size == 0
    # n_max grows by the images heldout reserved (60 - 5 val); the profile is kept
    assert max(res.train_counts) == 55 and max(held.train_counts) == 45
    assert np.bincount(labels[res.train_idx], minlength=10).tolist() == list(res.train_counts)
    # heldout's training images are all still there (every class keeps a longer prefix of
    # the same shuffled pool); the head class gains exactly its would-be meta images
    assert set(held.train_idx.tolist()) <= set(res.train_idx.tolist())
    head = res.class_order[0]
    gained = set(res.train_idx.tolist()) - set(held.train_idx.tolist())
    assert {i for i in gained if labels[i] == head} == {
        i for i in held.meta_idx.tolist() if labels[i] == head}
    assert res.meta_counts == tuple(min(10, n) for n in res.train_counts)
    assert min(res.train_counts) < 10  # a tail class gives all it has


def test_resample_meta_is_balanced_seeded_and_redrawn():
    labels = labels60()
    s = make_split(labels, 10, **SPEC, meta_source="resampled")
    train_labels = labels[s.train_idx]
    a = resample_meta(train_labels, 10, 10, seed=0, epoch=0)
    assert np.bincount(train_labels[a], minlength=10).tolist() == list(s.meta_counts)
    assert a.dtype == np.int64 and np.all(np.diff(a) > 0) and a.max() < s.train_idx.size
    np.testing.assert_array_equal(a, resample_meta(train_labels, 10, 10, seed=0, epoch=0))
    assert not np.array_equal(a, resample_meta(train_labels, 10, 10, seed=0, epoch=5))
    assert not np.array_equal(a, resample_meta(train_labels, 10, 10, seed=1, epoch=0))


def build(overrides):
    cfg = load_config(None, overrides)
    return build_data(cfg.data, batch_size=64, eval_batch_size=200, device=CPU, seed=cfg.seed)


RESAMPLED = ["method.name=mfm", "data.meta_source=resampled", "data.meta_resample_epochs=2"]


def test_build_data_resampled_meta_sets_are_training_images():
    data = build(RESAMPLED)
    held = build(["method.name=mfm"])
    assert data.train_counts[0] == held.train_counts[0] + 10  # nothing held out for meta
    assert data.num_train == sum(data.train_counts) > held.num_train
    assert data.split_hash != held.split_hash
    assert data.meta_counts == [min(10, n) for n in data.train_counts]
    assert torch.bincount(data.meta_y, minlength=10).tolist() == data.meta_counts
    r = data.meta_resampler
    assert r is not None and held.meta_resampler is None
    pos = resample_meta(r.labels, 10, 10, seed=0, epoch=0)
    train_x = data.train.normalize(data.train.images)  # the resident long-tailed images
    assert torch.equal(data.meta_x, train_x[torch.from_numpy(pos)])
    assert torch.equal(data.meta_y, data.train.labels[torch.from_numpy(pos)])
    # redrawn at multiples of meta_resample_epochs; in between, only a fit's first epoch asks
    assert data.meta_for_epoch(1) is None and held.meta_for_epoch(0, first=True) is None
    x0, y0 = data.meta_for_epoch(0)
    assert torch.equal(x0, data.meta_x) and torch.equal(y0, data.meta_y)
    x1, _ = data.meta_for_epoch(1, first=True)  # a run resumed at epoch 1: epoch 0's draw
    assert torch.equal(x1, data.meta_x)
    x2, y2 = data.meta_for_epoch(2)
    assert not torch.equal(x2, x0)
    assert torch.bincount(y2, minlength=10).tolist() == data.meta_counts
    x3, _ = data.meta_for_epoch(3, first=True)
    assert torch.equal(x3, x2)
    # the same (data.seed, epoch) gives the same set in another build, whatever the run seed
    again = build([*RESAMPLED, "seed=5"])
    assert torch.equal(again.meta_for_epoch(2)[0], x2)
    other = build([*RESAMPLED, "data.seed=1"])
    assert not torch.equal(other.meta_x, data.meta_x)


def test_resampled_with_a_method_without_meta_set():
    """ce ignores meta sets, but the split is the data's: resampled trains on everything
    heldout would have reserved (heldout holds out meta images for every method)."""
    cfg = load_config(None, ["method.name=ce", "data.meta_source=resampled"])
    assert cfg.data.meta_source == "resampled"
    assert build(["method.name=ce", "data.meta_source=resampled"]).train_counts[0] == \
        build(["method.name=ce"]).train_counts[0] + 10
    # kept in the resolved config (which must load again as it is), unused by heldout
    assert config_from_dict(config_to_dict(cfg)) == cfg
    load_config(None, ["data.meta_resample_epochs=3"])
    with pytest.raises(ConfigError, match="data.meta_resample_epochs"):
        load_config(None, ["data.meta_source=resampled", "data.meta_resample_epochs=0"])


def test_mfm_fit_redraws_the_meta_set_every_epoch(monkeypatch):
    sets = []
    real = MetaMethod.set_meta_set

    def spy(self, x, y):
        sets.append((x, y))
        real(self, x, y)

    monkeypatch.setattr(MetaMethod, "set_meta_set", spy)
    cfg = load_config(None, ["method.name=mfm", "model.name=resnet_tiny", "train.epochs=3",
                             "device=cpu", "train.batch_size=128", "optim.milestones=0.5",
                             "data.meta_source=resampled", "data.meta_resample_epochs=1",
                             "mfm.virtual_step=mirror", "train.checkpoint=false"])
    seed_everything(cfg.seed, CPU)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=CPU, seed=cfg.seed)
    rec = Recorder()
    fit(cfg, data, device=CPU, callbacks=rec)
    assert [e.epoch for e in rec.epochs] == [0, 1, 2]
    assert all(np.isfinite(e.scalars["train_loss"]) for e in rec.epochs)
    assert rec.info.meta_counts == data.meta_counts and rec.info.train_counts == data.train_counts
    assert len(sets) == 3
    assert not torch.equal(sets[0][0], sets[1][0]) and not torch.equal(sets[1][0], sets[2][0])
    for e, (x, _) in enumerate(sets):
        assert torch.equal(x, data.meta_for_epoch(e)[0])
