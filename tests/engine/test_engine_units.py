"""Metrics, schedule and checkpoint units."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from mfm.atomic import save_atomic
from mfm.engine.checkpoint import capture_rng, load_checkpoint, restore_rng
from mfm.engine.metrics import confusion_matrix, group_accuracy, per_class_accuracy, shot_groups
from mfm.engine.schedule import lr_factor, make_scheduler, milestone_epochs


def test_confusion_and_per_class_accuracy_by_hand():
    targets = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 1, 0, 1, 1, 0])
    conf = confusion_matrix(preds, targets, 3)
    assert conf.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert per_class_accuracy(conf) == pytest.approx([2 / 3, 1.0, 0.0])


def test_per_class_accuracy_class_without_test_samples_is_zero():
    conf = torch.tensor([[3, 0], [0, 0]])
    assert per_class_accuracy(conf) == [1.0, 0.0]


def test_shot_groups_thresholds():
    groups = shot_groups([500, 101, 100, 20, 19, 1], many_threshold=100, few_threshold=20)
    assert groups == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}
    acc = [1.0, 0.5, 0.4, 0.2, 0.1, 0.0]
    g = group_accuracy(acc, groups)
    assert g == pytest.approx({"many": 0.75, "medium": 0.3, "few": 0.05})
    assert "many" not in group_accuracy(acc, shot_groups([5, 5, 5, 5, 5, 5], 100, 20))


def test_milestones_and_factors():
    assert milestone_epochs((0.8, 0.9), 100) == [80, 90]
    f = [lr_factor(e, warmup_epochs=0, milestones=[80, 90], decay=0.1) for e in (0, 79, 80, 89, 90)]
    assert f == pytest.approx([1, 1, 0.1, 0.1, 0.01])
    w = [lr_factor(e, warmup_epochs=4, milestones=[8], decay=0.1) for e in range(10)]
    assert w == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 0.1, 0.1])


def test_scheduler_drives_optimizer_lr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_scheduler(opt, epochs=10, warmup_epochs=0, milestones=(0.5,), decay=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.1] * 5) and lrs[5:] == pytest.approx([0.01] * 5)


def test_atomic_save_round_trip_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_atomic({"w": torch.arange(3.0), "epoch": 2, "best": {"acc": 0.5}}, path)
    save_atomic({"w": torch.arange(4.0), "epoch": 3, "best": None}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 3 and state["w"].tolist() == [0, 1, 2, 3]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp files left


def test_rng_capture_restore_survives_weights_only(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = capture_rng()
    save_atomic({"rng": state}, tmp_path / "r.pt")
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(load_checkpoint(tmp_path / "r.pt")["rng"])
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


def test_time_to_accuracy_counts_training_seconds_to_the_first_epoch_near_the_final():
    from mfm.engine.metrics import seconds_to_fraction

    # final 0.80: 95 % of it is 0.76, first reached at the third epoch
    assert seconds_to_fraction([0.5, 0.7, 0.77, 0.9, 0.8], [1, 2, 3, 4, 5]) == 6
    assert seconds_to_fraction([0.9], [2.5]) == 2.5
    assert seconds_to_fraction([], []) is None
    assert seconds_to_fraction([0.5, 0.6], [1.0]) is None  # history incomplete
