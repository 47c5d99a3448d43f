"""Two-stage runs on real data (digits-LT): a stage 2 starts from its parent's weights
exactly, trains only the classifier when asked (everything else bit-identical), tau is chosen
on the validation split, and runs with SAM, MaxNorm or a parent resume exactly."""

from __future__ import annotations

import pytest
import torch
from tiny import CPU, fit_tiny, tiny_data

from mfm.engine.callbacks import Callbacks
from mfm.engine.checkpoint import load_checkpoint
from mfm.engine.stages import ParentMismatch, load_parent
from mfm.engine.training import _build, fit
from mfm.models import create_model
from mfm.schedule import lr_factor

BASE = ["method.name=ce", "train.epochs=2", "data.val_per_class=5", "optim.milestones=0.5"]


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """A finished 2-epoch ce run's folder (last.pt, best.pt)."""
    folder = tmp_path_factory.mktemp("parent")
    fit_tiny(BASE, folder)
    return folder


def weights(path):
    return load_checkpoint(path)["model"]


def test_init_from_loads_the_parents_weights_exactly(parent):
    cfg, data = tiny_data([*BASE, "train.init_from=1"])
    run = _build(cfg, data, device=CPU, callbacks=Callbacks(), checkpoint_dir=None,
                 method_options=None, init_from=parent / "best.pt")
    want = weights(parent / "best.pt")
    got = run.model.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_parent_of_another_model_or_class_count_is_one_line(parent):
    other = create_model("resnet8", num_classes=10, in_channels=1)
    with pytest.raises(ParentMismatch, match=r"^train\.init_from: .*another model"):
        load_parent(other, parent / "last.pt", device=CPU)
    fewer = create_model("resnet_tiny", num_classes=7, in_channels=1)
    with pytest.raises(ParentMismatch, match=r"^train\.init_from: the parent has another class "
                                             r"count \(classifier\.weight has shape"):
        load_parent(fewer, parent / "last.pt", device=CPU)


def test_classifier_only_stage_leaves_everything_else_bit_identical(parent, tmp_path):
    rec = fit_tiny([*BASE, "train.init_from=1", "train.trainable=classifier",
                    "data.sampler=class_balanced", "optim.lr=0.5"], tmp_path,
                   init_from=parent / "last.pt")
    assert len(rec.epochs) == 2
    before, after = weights(parent / "last.pt"), weights(tmp_path / "last.pt")
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved == {"classifier.weight", "classifier.bias"}  # BN statistics included


def test_crt_starts_from_a_fresh_classifier_and_the_parents_features(parent):
    cfg, data = tiny_data([*BASE, "train.init_from=1", "train.reset_classifier=true",
                           "train.trainable=classifier"])
    run = _build(cfg, data, device=CPU, callbacks=Callbacks(), checkpoint_dir=None,
                 method_options=None, init_from=parent / "last.pt")
    want, got = weights(parent / "last.pt"), run.model.state_dict()
    assert not torch.equal(got["classifier.weight"], want["classifier.weight"])
    assert all(torch.equal(got[k], want[k]) for k in want if not k.startswith("classifier."))


def test_weight_balancing_stage_two_keeps_rows_inside_the_radius(parent, tmp_path):
    fit_tiny([*BASE, "train.init_from=1", "train.trainable=classifier", "optim.max_norm=0.1",
              "optim.weight_decay=0.1", "method.name=cb"], tmp_path,
             init_from=parent / "last.pt")
    start = weights(parent / "last.pt")["classifier.weight"]
    norms0 = torch.linalg.vector_norm(start, dim=1)
    radius = norms0.min() + 0.1 * (norms0.max() - norms0.min())
    end = weights(tmp_path / "last.pt")["classifier.weight"]
    assert float(torch.linalg.vector_norm(end, dim=1).max()) <= float(radius) * (1 + 1e-6)
    assert load_checkpoint(tmp_path / "last.pt")["max_norm"]["radius"] == pytest.approx(
        float(radius))


def test_tau_norm_trains_nothing_and_chooses_tau_on_validation(parent, tmp_path):
    rec = fit_tiny(["train.epochs=1", "data.val_per_class=5", "method.name=tau_norm",
                    "train.init_from=1", "method.tau_select=val"], tmp_path,
                   init_from=parent / "last.pt")
    (epoch,) = rec.epochs
    assert epoch.scalars["tau"] in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    before, after = weights(parent / "last.pt"), weights(tmp_path / "last.pt")
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing trained


def test_tau_is_the_most_accurate_on_validation(parent):
    """choose_tau's answer is the best of the grid, checked against a direct evaluation."""
    from mfm.engine.metrics import accuracy
    from mfm.engine.training import choose_tau, evaluate

    cfg, data = tiny_data(["train.epochs=1", "data.val_per_class=5", "method.name=la",
                           "method.la_mode=posthoc", "method.tau_select=val"])
    run = _build(cfg, data, device=CPU, callbacks=Callbacks(), checkpoint_dir=None,
                 method_options=None, init_from=parent / "last.pt")
    grid = (0.0, 1.0, 3.0)
    tau, acc = choose_tau(run.model, run.method, data.val, data.num_classes, grid)
    accs = []
    for t in grid:
        run.method.set_tau(t)
        accs.append(accuracy(evaluate(run.model, run.method, data.val,
                                      data.num_classes).confusion))
    assert acc == max(accs) and tau == grid[accs.index(max(accs))]


def test_cosine_schedule_factors():
    f = [lr_factor(e, warmup_epochs=2, milestones=[], decay=0.1, schedule="cosine", epochs=10)
         for e in range(10)]
    assert f[:3] == [0.5, 1.0, 1.0]
    assert all(a > b for a, b in zip(f[2:], f[3:]))
    assert f[-1] == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(torch.pi * 7 / 8)).item()))


def scalars(rec):
    return {e.epoch: ({k: v for k, v in e.scalars.items() if k != "epoch_seconds"}, e.class_acc)
            for e in rec.epochs}


@pytest.mark.parametrize("overrides", [
    ["optim.sam=sam", "optim.sam_rho=0.1", "optim.schedule=cosine"],
    ["optim.sam=imbsam", "method.name=la", "method.reweight=drw", "method.drw_start=0.5"],
    ["train.init_from=1", "train.trainable=classifier", "optim.max_norm=0.1",
     "data.sampler=class_balanced"],
], ids=["sam_cosine", "imbsam_la_drw", "stage2_maxnorm_cbsampler"])
def test_resume_is_exact(parent, tmp_path, overrides):
    ov = ["method.name=ce", "train.epochs=4", "data.val_per_class=5", *overrides]
    init = parent / "last.pt" if any(o.startswith("train.init_from") for o in ov) else None
    full = fit_tiny(ov, tmp_path / "full", init_from=init)
    first = fit_tiny(ov, tmp_path / "cut", stop_at=2, init_from=init)
    second = fit_tiny(ov, tmp_path / "cut", resume=True, init_from=init)
    assert second.info.start_epoch == 2
    resumed = {**scalars(first), **scalars(second)}
    assert resumed == scalars(full)


def test_fit_refuses_nothing_when_resuming_without_the_parent(parent, tmp_path):
    """A resume takes everything from last.pt: the parent may be gone by then."""
    ov = [*BASE, "train.init_from=1", "train.trainable=classifier"]
    fit_tiny(ov, tmp_path, stop_at=1, init_from=parent / "last.pt")
    rec = fit_tiny(ov, tmp_path, resume=True, init_from=tmp_path / "no-such-parent.pt")
    assert [e.epoch for e in rec.epochs] == [1]
    cfg, data = tiny_data(ov)
    with pytest.raises(FileNotFoundError):
        fit(cfg, data, device=CPU, init_from=tmp_path / "no-such-parent.pt")
