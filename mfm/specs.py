"""Named dataset specs and named method configs, as stored in the records (torch-free).

A **dataset spec** is the ``data`` section alone: ``{"data": {"name": ..., "profile": ...}}``.
A **named config** is everything else a run needs: ``{"model": ..., "method": ..., "train":
..., "optim": ..., "mfm": ..., "mwnet": ..., "seed": ..., "device": ...}`` (any subset; the
rest are defaults). A run's config is composed as: defaults ← dataset spec ← named config ←
``--config`` file ← ``--set`` overrides, then validated as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfm.config import Config, ConfigError, config_from_dict, read_toml
from mfm.text import visible

__all__ = ["DATASET_SECTION", "split_dataset_spec", "compose", "check_dataset_spec",
           "check_named_config", "ConfigRef", "ConfigRefError", "parse_config_ref"]

DATASET_SECTION = "data"


class ConfigRefError(ValueError):
    """A reference to a named config that is not ``NAME`` or ``NAME@VERSION``; ``text`` is
    what was given. The message says so without naming a field (the caller knows it)."""

    def __init__(self, text: str):
        self.text = text
        super().__init__(f"expected NAME or NAME@VERSION with VERSION a whole number from 1 "
                         f"(got {visible(repr(text), 80)})")


@dataclass(frozen=True)
class ConfigRef:
    """``NAME`` (the latest version) or ``NAME@VERSION``."""

    name: str
    version: int | None


#: the largest version a reference may name (a version is a SQL integer)
MAX_VERSION = 2**31 - 1


def parse_config_ref(text: str) -> ConfigRef:
    """The one reading of ``NAME[@VERSION]``, for ``mfm run --config-name``, a sweep file's
    ``config`` key and mfm-tui alike: VERSION is ASCII digits (``x@\u00b2`` is refused, not a
    crash), 1 or more; the name is not empty."""
    name, sep, version = text.partition("@")
    if not name.strip():
        raise ConfigRefError(text)
    if not sep:
        return ConfigRef(name, None)
    if not (version.isascii() and version.isdigit()) or not 1 <= int(version) <= MAX_VERSION:
        raise ConfigRefError(text)
    return ConfigRef(name, int(version))


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def split_dataset_spec(d: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A nested config dict -> (its dataset spec, the rest)."""
    spec = {DATASET_SECTION: dict(d.get(DATASET_SECTION, {}))}
    rest = {k: v for k, v in d.items() if k != DATASET_SECTION}
    return spec, rest


def check_dataset_spec(spec: dict[str, Any]) -> Config:
    """Validate a dataset spec alone (with default method settings); raises ConfigError."""
    if set(spec) - {DATASET_SECTION}:
        extra = sorted(set(spec) - {DATASET_SECTION})[0]
        raise ConfigError(extra, "a dataset spec holds only data.* keys")
    return config_from_dict(spec)


def check_named_config(config: dict[str, Any]) -> Config:
    """Validate a named method config alone (with the default dataset); raises ConfigError."""
    if DATASET_SECTION in config:
        raise ConfigError("data", "a named config holds no data.* keys: put them in a "
                                  "dataset spec")
    return config_from_dict(config)


def compose(*, dataset_spec: dict[str, Any] | None = None,
            named_config: dict[str, Any] | None = None, config_file: str | Path | None = None,
            overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """defaults ← dataset spec ← named config ← TOML file ← overrides, validated."""
    d: dict[str, Any] = {}
    if dataset_spec:
        d = _merge(d, dataset_spec)
    if named_config:
        d = _merge(d, named_config)
    if config_file is not None:
        d = _merge(d, read_toml(config_file))
    return config_from_dict(d, overrides)
