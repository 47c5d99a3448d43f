"""What a sweep file becomes: :class:`SweepSpec` (parsed, unvalidated), :class:`Cell` (one
validated run), :class:`SweepError`, and the config-key checks that parsing and expansion
share. Torch-free."""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any

from mfm.config import Config, config_to_dict, describe
from mfm.text import visible

__all__ = ["MAX_CELLS", "SEED_KEY", "Cell", "Entry", "SweepError", "SweepSpec", "check_key",
           "config_keys", "is_plain", "show"]

MAX_CELLS = 10_000
SEED_KEY = "seed"
_KEYS = frozenset(f.key for f in describe())

#: one value of an axis: (its label or None, the dotted keys it sets)
Entry = tuple[str | None, dict[str, Any]]


class SweepError(ValueError):
    """A bad sweep file: one line naming the file's key or cell."""


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep file (values still unvalidated; :func:`expand` validates)."""

    name: str
    base: dict[str, Any]                      # nested run settings
    dataset: str | None
    config: str | None
    grid: dict[str, list[Any]]                # dotted key -> values (seed included)
    arms: list[tuple[str, dict[str, Any]]]    # extra named arms: (name, dotted key -> value)
    exclude: list[dict[str, Any]]
    max_cells: int | None
    text: str = ""
    # axes that set several keys per value: "seed,data.seed" = [[0, 0], [1, 1]] (linked), or
    # [[grid.dataset]] tables (one value each, with an optional label)
    linked: list[tuple[str, list[tuple[str | None, dict[str, Any]]]]] = field(
        default_factory=list)
    skip_invalid: bool = False                # drop cells validation refuses (an ablation)
    order: tuple[str, ...] = ()               # axis names as the file gives them (arm labels)


@dataclass(frozen=True)
class Cell:
    """One run of the sweep: its arm, its seed and its validated config."""

    index: int
    arm: str
    seed: int
    overrides: dict[str, Any]                 # the dotted keys this cell sets over the base
    config: Config = field(repr=False)
    # the [[arm]] table the cell comes from (None: an arm of the grid's product), and the keys
    # the grid's axes set in it (the seed axis's too): where it sits in the grid, which
    # train.init_from = "arm:NAME" matches a child's cell against (mfm.sweeps.lineage)
    arm_table: str | None = None
    axis_keys: tuple[str, ...] = ()

    @functools.cached_property
    def resolved(self) -> dict[str, Any]:
        """The resolved config as a dict (computed once per cell; a replaced cell, e.g. with
        its transfer source resolved, computes its own)."""
        return config_to_dict(self.config)


def config_keys() -> frozenset[str]:
    """Every dotted config key (``method.name``, ``seed``, ...)."""
    return _KEYS


def _nearest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(_KEYS), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(close)}?" if close else \
        " (see python -c 'from mfm.config import describe' for every key)"


def check_key(where: str, key: str) -> None:
    """SweepError (with the nearest keys) unless ``key`` is a config key."""
    if key not in _KEYS:
        raise SweepError(f"{where}: unknown key {visible(repr(key), 80)}{_nearest(key)}")


def show(value: Any) -> str:
    """A value as error messages quote it."""
    return visible(repr(value), 60)


def is_plain(value: Any) -> bool:
    """A value a config key can hold (and the records can store as JSON): no tables, dates."""
    if isinstance(value, list):
        return all(is_plain(v) for v in value)
    return isinstance(value, (str, int, float, bool))
