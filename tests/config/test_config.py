"""Config: defaults, TOML, overrides, and one-line errors naming the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from mfm.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    describe,
    load_config,
    parse_override,
)

FIXED_KEYS = ["data.name", "data.root", "data.profile", "data.imbalance_factor",
              "data.meta_per_class", "data.seed", "model.name", "method.name", "train.epochs",
              "train.batch_size", "optim.lr", "seed", "device"]


def test_fixed_key_names_exist():
    keys = {f.key for f in describe()}
    assert set(FIXED_KEYS) <= keys


def test_defaults_are_the_embedded_job():
    cfg = load_config()
    assert cfg.data.name == "digits" and cfg.method.name == "mfm" and cfg.device == "auto"
    assert cfg.optim.milestones == (0.8, 0.9)


def test_overrides_are_typed():
    cfg = load_config(None, ["optim.lr=0.05", "train.epochs=3", "optim.nesterov=false",
                             "optim.milestones=0.5,0.75", "data.name=fashion-mnist"])
    assert cfg.optim.lr == 0.05 and isinstance(cfg.optim.lr, float)
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.optim.nesterov is False
    assert cfg.optim.milestones == (0.5, 0.75)
    assert cfg.data.name == "fashion-mnist"


def test_toml_then_overrides(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('seed = 3\n[data]\nname = "mnist"\nimbalance_factor = 50\n'
                 '[optim]\nlr = 0.2\n')
    cfg = load_config(p, ["optim.lr=0.01"])
    assert (cfg.seed, cfg.data.name, cfg.data.imbalance_factor, cfg.optim.lr) == (3, "mnist", 50.0,
                                                                                   0.01)


def test_round_trip_through_json_dict():
    cfg = load_config(None, ["method.name=focal", "method.focal_gamma=2"])
    d = config_to_dict(cfg)
    assert d["optim"]["milestones"] == [0.8, 0.9]
    assert config_from_dict(d) == cfg


def test_frozen():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize("override, key, words", [
    ("nosuch.key=1", "nosuch.key", "valid keys: data.name"),
    ("data.imbalance_factor=0.5", "data.imbalance_factor", ">= 1"),
    ("data.name=imagenet", "data.name", "digits | fashion-mnist"),
    ("method.name=sgd", "method.name", "ce | focal | cb"),
    ("train.epochs=0", "train.epochs", ">= 1"),
    ("train.batch_size=-4", "train.batch_size", ">= 1"),
    ("optim.lr=fast", "optim.lr", "expected float"),
    ("optim.nesterov=maybe", "optim.nesterov", "expected bool"),
    ("device=gpu", "device", "auto | cpu | cuda | cuda:N"),
    ("data.profile=linear", "data.profile", "exp | step"),
    ("optim.milestones=0.9,0.5", "optim.milestones", "increasing"),
    ("method.focal_gamma=2", "method.focal_gamma", "applies only to method.name"),
    ("optim.momentum=1", "optim.momentum", "< 1"),
    ("data.meta_per_class=-1", "data.meta_per_class", ">= 0"),
    ("epochs", "epochs", "key=value"),
])
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [override])
    msg = str(ei.value)
    assert ei.value.key == key
    assert msg.startswith(f"{key}: ")
    assert words in msg
    assert "\n" not in msg


def test_bad_toml_and_unreadable(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_unknown_section_and_types_in_toml(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text("[dataa]\nname = 'digits'\n")
    with pytest.raises(ConfigError, match="dataa: unknown key"):
        load_config(p)
    p.write_text("[train]\nepochs = 'ten'\n")
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_config(p)


def test_parse_override_splits_on_first_equals():
    assert parse_override("data.root=/a=b") == ("data.root", "/a=b")


@pytest.mark.slow  # a real subprocess
def test_config_module_is_torch_free():
    code = "import sys, mfm.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("overrides", [
    ["method.name=mfm", "mfm.modulator=free", "mfm.sites=bn", "mfm.form=scale_shift"],
    ["method.name=mfm", "mfm.inputs=features", "mfm.apply=everywhere"],
    ["method.name=mwnet", "mwnet.hidden=50"],
    ["method.name=ldam_drw", "method.drw_start=0.5"],
])
def test_resolved_config_round_trips_and_holds_only_what_applies(overrides):
    cfg = load_config(None, overrides)
    d = config_to_dict(cfg)
    assert config_from_dict(d) == cfg
    if cfg.method.name != "mfm":
        assert "mfm" not in d
    if cfg.method.name == "mfm" and cfg.mfm.modulator != "network":
        assert "inputs" not in d["mfm"]


def test_mfm_choices_are_marked_as_ours():
    info = {f.key: f for f in describe()}
    assert "our reconstruction" in info["mfm.sites"].help
    assert "APPROXIMATION" in info["mfm.reuse_virtual_grads"].help


def test_label_shortcut_rule():
    ok = load_config(None, ["method.name=mfm", "mfm.modulator=free_per_class"])
    assert ok.mfm.sites == "penultimate" and ok.mfm.form == "scale"
    for bad in (["mfm.modulator=free_per_class", "mfm.sites=stage"],
                ["mfm.inputs=loss_freq", "mfm.form=scale_shift"],
                ["mfm.modulator=free_per_class", "mfm.apply=everywhere"]):
        with pytest.raises(ConfigError) as e:
            load_config(None, ["method.name=mfm", *bad])
        assert "label" in str(e.value)
    load_config(None, ["method.name=mfm", "mfm.modulator=free", "mfm.sites=bn",
                       "mfm.form=scale_shift", "mfm.apply=everywhere"])


def test_label_shortcut_can_be_allowed_only_explicitly_for_measuring_it():
    over = ["method.name=mfm", "mfm.sites=bn", "mfm.form=scale_shift",
            "mfm.modulator=free_per_class"]
    with pytest.raises(ConfigError, match="allow_label_shortcut=true only to measure"):
        load_config(None, over)
    cfg = load_config(None, [*over, "mfm.allow_label_shortcut=true"])
    assert cfg.mfm.sites == "bn" and cfg.mfm.allow_label_shortcut
    # evaluation has no label: apply=everywhere stays impossible whatever the flag says
    with pytest.raises(ConfigError, match="mfm.apply"):
        load_config(None, [*over, "mfm.allow_label_shortcut=true", "mfm.apply=everywhere"])


def test_loss_freq_needs_the_penultimate_feature_even_when_shortcuts_are_allowed():
    with pytest.raises(ConfigError, match="mfm.sites: a loss_freq modulator reads each"):
        load_config(None, ["method.name=mfm", "mfm.sites=stage", "mfm.allow_label_shortcut=true"])
