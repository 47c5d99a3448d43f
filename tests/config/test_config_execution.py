"""The execution keys (train.threads, train.amp, train.channels_last, train.compile) and the
identity rule: how a run executes is not what it trained, and keys added later leave the hash
of every run recorded before them unchanged."""

from __future__ import annotations

import copy

import pytest

from mfm.config import (
    EXECUTION_KEYS,
    LATE_KEYS,
    ConfigError,
    config_from_dict,
    config_to_dict,
    describe,
    identity_dict,
    load_config,
)
from mfm.store.hashing import config_hash

NEW_KEYS = ("train.threads", "train.amp", "train.channels_last", "train.compile")


def _without_new_keys(d: dict) -> dict:
    """A resolved config as runs recorded before these keys hold it."""
    old = copy.deepcopy(d)
    for key in NEW_KEYS:
        sec, _, name = key.partition(".")
        old[sec].pop(name)
    return old


@pytest.mark.parametrize("overrides", [[], ["method.name=ce"], ["method.name=mwnet"],
                                       ["method.name=mwnet", "mwnet.preset=official"],
                                       ["method.name=ldam_drw", "optim.lr=0.05"]])
def test_a_recorded_runs_hash_is_unchanged_by_the_new_keys_at_their_defaults(overrides):
    d = config_to_dict(load_config(None, overrides))
    assert d["train"]["threads"] == "auto" and d["train"]["amp"] == "off"
    assert config_hash(d) == config_hash(_without_new_keys(d))


@pytest.mark.parametrize("execution", [["train.threads=1"], ["train.threads=16"],
                                       ["train.channels_last=true"],
                                       ["train.compile=plain", "method.name=ce"]])
def test_how_a_run_executes_is_not_part_of_its_identity(execution):
    base = [o for o in execution if o.startswith("method.")] or ["method.name=ce"]
    plain = config_to_dict(load_config(None, base))
    other = config_to_dict(load_config(None, [*base, *execution]))
    assert plain != other and config_hash(plain) == config_hash(other)


def test_mixed_precision_is_part_of_what_a_run_trained():
    off = config_to_dict(load_config(None, []))
    bf16 = config_to_dict(load_config(None, ["train.amp=bf16"]))
    assert config_hash(off) != config_hash(bf16)
    assert identity_dict(bf16)["train"]["amp"] == "bf16"
    assert "amp" not in identity_dict(off)["train"]


def test_the_identity_rule_is_written_once_and_leaves_the_config_alone():
    assert set(EXECUTION_KEYS) | {"train.amp"} == set(NEW_KEYS)
    assert set(NEW_KEYS) <= set(EXECUTION_KEYS) | set(LATE_KEYS)
    d = config_to_dict(load_config(None, ["train.threads=3"]))
    before = copy.deepcopy(d)
    ident = identity_dict(d)
    assert d == before  # not mutated
    assert "threads" not in ident["train"] and "channels_last" not in ident["train"]
    assert identity_dict({"seed": 1}) == {"seed": 1}  # partial dicts are fine


@pytest.mark.parametrize("value, expected", [("auto", "auto"), ("1", 1), (" 4 ", 4)])
def test_threads_is_auto_or_a_number_as_an_override(value, expected):
    assert load_config(None, [f"train.threads={value}"]).train.threads == expected


@pytest.mark.parametrize("value, expected", [("auto", "auto"), (2, 2)])
def test_threads_is_auto_or_a_number_in_toml(value, expected):
    cfg = config_from_dict({"train": {"threads": value}})
    assert cfg.train.threads == expected
    assert config_from_dict(config_to_dict(cfg)).train.threads == expected  # round trip


@pytest.mark.parametrize("item, message", [
    ("train.threads=0", "train.threads: must be >= 1 (got 0)"),
    ("train.threads=many", "train.threads: expected auto | int, got 'many'"),
    ("train.threads=2.5", "train.threads: expected auto | int, got '2.5'"),
    ("train.amp=fp8", "train.amp: must be one of off | bf16 | fp16 (got 'fp8')"),
    ("train.compile=max", "train.compile: must be one of off | plain (got 'max')"),
])
def test_bad_execution_values_name_the_key(item, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [item])
    assert str(e.value) == message


@pytest.mark.parametrize("value", [True, 2.0, "4", [1]])
def test_threads_in_toml_must_be_auto_or_an_int(value):
    with pytest.raises(ConfigError, match=r"^train\.threads: expected auto \| int"):
        config_from_dict({"train": {"threads": value}})


@pytest.mark.parametrize("method", ["mfm", "mwnet"])
def test_compile_is_refused_for_the_bilevel_methods_in_one_line(method):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"method.name={method}", "train.compile=plain"])
    text = str(e.value)
    assert text.startswith("train.compile: ") and "\n" not in text
    assert "double backward" in text and "#92348" in text


def test_compile_is_accepted_for_a_plain_method_and_fp16_away_from_the_cpu():
    assert load_config(None, ["method.name=ce", "train.compile=plain"]).train.compile == "plain"
    assert load_config(None, ["train.amp=fp16"]).train.amp == "fp16"  # device=auto


def test_the_schema_describes_threads_for_forms():
    info = {f.key: f for f in describe()}
    t = info["train.threads"]
    assert t.type == "auto | int" and t.default == "auto" and t.choices is None and t.ge == 1
    assert "aot_autograd" in info["train.compile"].help
    assert info["train.amp"].choices == ("off", "bf16", "fp16")
