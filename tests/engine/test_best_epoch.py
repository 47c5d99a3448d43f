"""The best epoch (summary["best"], best.pt) is chosen on the validation split when the run has
one, on the test split otherwise, and the summary says which (summary["best_on"])."""

from __future__ import annotations

import pytest
import torch
from tiny import fit_tiny

from mfm.engine import Callbacks, EpochResult, Tee
from mfm.engine.checkpoint import load_checkpoint

# Runs whose peaks make the rule visible (digits-LT, CPU; found by trying seeds). The tests
# take the first candidate that shows the property on this machine, so that a last-bit
# difference in another CPU's kernels does not leave them without a case.
# With 3-5 validation images per class: validation peaks strictly before test does.
WITH_VAL = [[f"data.val_per_class={v}", f"train.epochs={e}", f"seed={s}", f"optim.lr={lr}",
             "optim.milestones=0.5"]
            for v, e, s, lr in ((3, 3, 1, 0.05), (3, 4, 5, 0.05), (5, 4, 5, 0.05),
                                (3, 4, 4, 0.1))]
# No validation split, a large lr: test accuracy peaks (strictly) before the last epoch.
WITHOUT_VAL = [["train.epochs=3", f"seed={s}", "optim.lr=0.6", "optim.milestones=0.5"]
               for s in (3, 2)]


class KeepWeights(Callbacks):
    """The weights of every epoch, read from the last.pt written just before on_epoch."""

    def __init__(self, ckpt):
        self.ckpt, self.weights = ckpt, {}

    def on_epoch(self, result: EpochResult) -> None:
        self.weights[result.epoch] = load_checkpoint(self.ckpt / "last.pt")["model"]


def train(overrides, ckpt, **kw):
    keep = KeepWeights(ckpt)
    rec = fit_tiny(overrides, ckpt, callbacks=lambda r: Tee(r, keep), **kw)
    return rec, keep.weights


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def first_max(values) -> int:
    return values.index(max(values))


def running_best(values) -> list[bool]:
    return [i == 0 or v > max(values[:i]) for i, v in enumerate(values)]


def unique_max(values) -> bool:
    return values.count(max(values)) == 1


def val_peaks_first(tmp_path):
    """(overrides, recorder, weights, validation-best epoch, test-best epoch) of the first
    WITH_VAL run whose validation peak (unique) comes before its test peak."""
    for i, overrides in enumerate(WITH_VAL):
        rec, weights = train(overrides, tmp_path / f"run{i}")
        val = [e.scalars["val_acc"] for e in rec.epochs]
        acc = [e.scalars["acc"] for e in rec.epochs]
        if unique_max(val) and first_max(val) < first_max(acc):
            return overrides, tmp_path / f"run{i}", rec, weights, first_max(val), first_max(acc)
    pytest.fail("no WITH_VAL candidate peaks on validation before test here: add one")


def test_with_a_validation_split_the_best_epoch_is_the_validation_best(tmp_path):
    _, ckpt, rec, weights, by_val, by_test = val_peaks_first(tmp_path)
    val = [e.scalars["val_acc"] for e in rec.epochs]
    acc = [e.scalars["acc"] for e in rec.epochs]
    assert rec.summary["best_on"] == "val"
    best = rec.summary["best"]
    assert (best["epoch"], best["val_acc"], best["acc"]) == (by_val, val[by_val], acc[by_val])
    assert [e.is_best for e in rec.epochs] == running_best(val)
    assert not rec.epochs[by_test].is_best  # the test split's best epoch is not chosen
    saved = load_checkpoint(ckpt / "best.pt")
    assert saved["epoch"] == by_val
    assert same_weights(saved["model"], weights[by_val])
    assert not same_weights(saved["model"], weights[by_test])


def test_without_a_validation_split_the_best_epoch_is_the_test_best(tmp_path):
    for i, overrides in enumerate(WITHOUT_VAL):
        ckpt = tmp_path / f"run{i}"
        rec, weights = train(overrides, ckpt)
        acc = [e.scalars["acc"] for e in rec.epochs]
        if unique_max(acc) and first_max(acc) < len(acc) - 1:
            break
    else:
        pytest.fail("no WITHOUT_VAL candidate peaks on test before its last epoch here")
    assert all("val_acc" not in e.scalars for e in rec.epochs)
    by_test, last = first_max(acc), len(acc) - 1
    assert rec.summary["best_on"] == "test"
    assert (rec.summary["best"]["epoch"], rec.summary["best"]["acc"]) == (by_test, acc[by_test])
    assert [e.is_best for e in rec.epochs] == running_best(acc)
    saved = load_checkpoint(ckpt / "best.pt")
    assert saved["epoch"] == by_test
    assert same_weights(saved["model"], weights[by_test])
    assert not same_weights(saved["model"], weights[last])


def test_a_resumed_run_keeps_choosing_on_validation(tmp_path):
    """Cut right after the validation-best epoch: the resumed epochs (one of them better on
    test, all worse on validation) must neither become best nor overwrite best.pt."""
    overrides, _, full, weights, by_val, by_test = val_peaks_first(tmp_path)
    cut = by_val + 1
    fit_tiny(overrides, tmp_path / "cut", stop_at=cut)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["best_on"] == "val"
    second, _ = train(overrides, tmp_path / "cut", resume=True)
    assert second.info.start_epoch == cut and by_test in [e.epoch for e in second.epochs]
    assert not any(e.is_best for e in second.epochs)
    assert (second.summary["best"], second.summary["best_on"]) == (full.summary["best"], "val")
    saved = load_checkpoint(tmp_path / "cut" / "best.pt")
    assert saved["epoch"] == by_val and same_weights(saved["model"], weights[by_val])
