"""Transfer of a trained modulator network to a new run (frozen: no meta set, no virtual step)."""

from __future__ import annotations

import pytest
import torch

from mfm.config import load_config
from mfm.data import build_data
from mfm.engine import Recorder, fit
from mfm.methods.mfm import (
    DESCRIPTION_FILE,
    MODULATOR_FILE,
    ModulatorFileError,
    check_transfer,
    expected_describe,
    load_modulator_file,
)
from mfm.methods.transfer import check_description, read_description
from mfm.models import create_model

CPU = torch.device("cpu")
TINY = ["model.name=resnet_tiny", "train.epochs=1", "device=cpu", "train.log_every=2"]


def train(tmp_path, name, overrides):
    cfg = load_config(None, [*TINY, *overrides])
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=CPU, seed=cfg.seed)
    rec = Recorder()
    out = tmp_path / name
    fit(cfg, data, device=CPU, callbacks=rec, checkpoint_dir=out,
        method_options={"modulator_path": cfg.mfm.modulator_from or None}
        if cfg.method.name == "mfm" else None)
    return cfg, rec, out


def test_round_trip(tmp_path):
    _, rec, src = train(tmp_path, "source", ["method.name=mfm"])
    path = src / MODULATOR_FILE
    saved = load_modulator_file(path)
    assert saved["describe"]["sites"] == {"penultimate": 16}
    # beside it, the description a transfer is checked against when it is queued (no torch)
    desc = read_description(src / DESCRIPTION_FILE)
    assert desc["describe"] == saved["describe"] and desc["hidden"] == saved["hidden"]
    assert (desc["model"], desc["site_kind"], desc["num_classes"]) == ("resnet_tiny",
                                                                       "penultimate", 10)
    assert any("meta_loss" in v for _, _, v in rec.steps)
    assert any(k.startswith("mod/penultimate/gamma_mean") for _, _, v in rec.steps for k in v)
    # the trained modulator is no longer the identity
    assert any(v.abs().sum() > 0 for k, v in saved["state"].items() if k.endswith("2.weight"))

    # reuse on another long-tailed split (other IF, other seed, no meta set) and a deeper model
    cfg2, rec2, dst = train(tmp_path, "target", [
        "method.name=mfm", f"mfm.modulator_from={path}", "data.meta_per_class=0",
        "data.imbalance_factor=20", "data.seed=3", "model.name=resnet8"])
    assert cfg2.mfm.freeze_modulator
    check_description(desc, cfg2.mfm)
    assert not any("meta_loss" in v for _, _, v in rec2.steps)  # no meta step happened
    reloaded = load_modulator_file(dst / MODULATOR_FILE)
    for k, v in saved["state"].items():
        if k not in ("log_freq", "log_prior"):
            assert torch.equal(v, reloaded["state"][k]), k  # frozen: unchanged by training
    assert rec2.summary is not None and rec2.summary["final"]["acc"] > 0.1


def test_not_a_modulator_file(tmp_path):
    bogus = tmp_path / "x.pt"
    torch.save({"model": torch.zeros(1)}, bogus)
    with pytest.raises(ModulatorFileError, match="not a modulator checkpoint"):
        load_modulator_file(bogus)
    text = tmp_path / "y.pt"
    text.write_text("hello")
    with pytest.raises(ModulatorFileError, match="not a modulator checkpoint"):
        load_modulator_file(text)
    with pytest.raises(ModulatorFileError, match="does not exist"):
        load_modulator_file(tmp_path / "none.pt")


def test_features_site_channel_mismatch_names_both_shapes():
    opts = load_config(None, ["method.name=mfm", "mfm.inputs=features"]).mfm
    tiny = create_model("resnet_tiny", num_classes=10, in_channels=1).sites()
    r20 = create_model("resnet20", num_classes=10, in_channels=1).sites()
    state = {"describe": expected_describe(tiny, opts)}
    with pytest.raises(ModulatorFileError) as e:
        check_transfer(state, expected_describe(r20, opts))
    assert "penultimate:16" in str(e.value) and "penultimate:64" in str(e.value)
    check_transfer(state, expected_describe(tiny, opts))  # same shapes: fine
    # loss_freq modulators fit any backbone
    lf = load_config(None, ["method.name=mfm"]).mfm
    check_transfer({"describe": expected_describe(tiny, lf)}, expected_describe(r20, lf))


def test_a_loss_freq_modulator_must_read_the_same_base_loss():
    """A loss/frequency network was trained on losses under one base loss; reading losses under
    another is refused with the key to set (a features network does not read the loss)."""
    tiny = create_model("resnet_tiny", num_classes=10, in_channels=1).sites()
    bs = load_config(None, ["method.name=mfm"]).mfm  # the default: balanced_softmax
    ce = load_config(None, ["method.name=mfm", "mfm.base_loss=ce"]).mfm
    saved = {"describe": expected_describe(tiny, bs)}
    with pytest.raises(ModulatorFileError, match="set mfm.base_loss=balanced_softmax"):
        check_transfer(saved, expected_describe(tiny, ce))
    check_transfer(saved, expected_describe(tiny, bs))
    # a file written before the key was recorded was trained on ce's loss
    old = {"describe": {k: v for k, v in expected_describe(tiny, ce).items() if k != "base_loss"}}
    check_transfer(old, expected_describe(tiny, ce))
    with pytest.raises(ModulatorFileError, match="mfm.base_loss=ce"):
        check_transfer(old, expected_describe(tiny, bs))
    feats = [load_config(None, ["method.name=mfm", "mfm.inputs=features", f"mfm.base_loss={b}"]
                         ).mfm for b in ("ce", "balanced_softmax")]
    check_transfer({"describe": expected_describe(tiny, feats[0])},
                   expected_describe(tiny, feats[1]))
