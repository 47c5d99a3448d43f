"""Expanding a sweep: the grid's axes and the named arms -> arms -> cells, each a validated
Config (``expand``). All or nothing: an error names the cell (its arm and seed) and the key."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfm.config import Config, ConfigError, applies_to, config_from_dict
from mfm.sweeps.model import (
    MAX_CELLS,
    SEED_KEY,
    Cell,
    Entry,
    SweepError,
    SweepSpec,
    config_keys,
    show,
)
from mfm.text import visible

__all__ = ["collect_arms", "expand"]

@dataclass(frozen=True)
class _ArmSpec:
    """An arm before its cells."""

    label: str
    keys: dict[str, Any]                  # every key it sets
    seeds: list[Entry] | None             # its seed axis, None when the arm sets the seed
    table: str | None = None              # the [[arm]] it comes from (None: the grid's)
    axis_keys: tuple[str, ...] = ()       # the keys of ``keys`` that the grid's axes set


def expand(spec: SweepSpec, *, base_dict: Mapping[str, Any] | None = None,
           max_cells: int | None = None, skipped: list[str] | None = None) -> list[Cell]:
    """Every cell of the sweep, validated. ``base_dict`` is the nested base the saved spec and
    config resolve to (the caller reads them from the records), under the file's own base.

    Raises SweepError naming the cell (its arm and seed) and the key; with the file's
    ``skip_invalid = true`` such cells are left out instead and described in ``skipped``."""
    base = _merge(dict(base_dict or {}), spec.base)
    axes, seed_axis = _axes(spec)
    _check_size(spec, axes, seed_axis, max_cells)
    default_method = str(base.get("method", {}).get("name", Config().method.name))
    arms = _arm_specs(spec, axes, seed_axis, default_method)
    builder = _CellBuilder(spec, skipped)
    arm_names: dict[str, dict[str, Any]] = {}
    for arm in arms:
        label, keys = arm.label, arm.keys
        if label in arm_names:
            if arm_names[label] == keys:
                continue  # the same arm again after dropping keys that do not apply
            raise SweepError(f"arm {show(label)}: two arms resolve to this name; rename one")
        arm_names[label] = keys
        cell_base = _prune(base, str(keys.get("method.name", default_method)))
        for entry in (arm.seeds if arm.seeds is not None else [None]):
            builder.add(cell_base, arm, entry)
    if not builder.cells:
        raise SweepError("grid: every cell is excluded")
    return builder.cells


def collect_arms(cells: Sequence[Cell]) -> list[str]:
    """Arm names in the order they first appear."""
    return list(dict.fromkeys(c.arm for c in cells))


# ---------------------------------------------------------------- axes and arms

def _axes(spec: SweepSpec) -> tuple[dict[str, list[Entry]], list[Entry] | None]:
    """(every axis but the seed's as a list of (label or None, keys it sets), in the file's
    order; the seed axis, or None)."""
    axes: dict[str, list[Entry]] = {}
    seed_axis: list[Entry] | None = None
    for k, values in spec.grid.items():
        entries: list[Entry] = [(None, {k: v}) for v in values]
        if k == SEED_KEY:
            seed_axis = entries
        else:
            axes[k] = entries
    for k, entries in spec.linked:
        if any(SEED_KEY in d for _, d in entries):
            seed_axis = list(entries)
        else:
            axes[k] = list(entries)
    rank = {k: i for i, k in enumerate(spec.order)}
    axes = dict(sorted(axes.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    return axes, seed_axis


def _check_size(spec: SweepSpec, axes: Mapping[str, list[Entry]],
                seed_axis: list[Entry] | None, max_cells: int | None) -> None:
    """SweepError when the grid has more cells (before exclusions) than the limit."""
    limit = max_cells or spec.max_cells or MAX_CELLS
    n_arm_cells = 1
    for values in axes.values():
        n_arm_cells *= len(values)
    estimate = (n_arm_cells + len(spec.arms) * n_arm_cells) * len(seed_axis or [None])
    if estimate > limit:
        raise SweepError(f"grid: {estimate} cells is more than the limit of {limit} "
                         "(raise it with --max-cells or max_cells)")


def _applicable(keys: dict[str, Any], fixed: Mapping[str, Any],
                default_method: str) -> dict[str, Any]:
    """Grid values of keys that mean nothing for the cell's method are dropped (a grid over
    mfm.meta_interval gives ce one arm, not one per interval)."""
    method = str({**keys, **fixed}.get("method.name", default_method))
    return {k: v for k, v in keys.items()
            if (methods := applies_to(k)) is None or method in methods}


def _combine(combo: Sequence[Entry], fixed: Mapping[str, Any],
             default_method: str) -> tuple[str, dict[str, Any]]:
    """(label, keys) of one combination of axis values, under an arm's ``fixed`` keys."""
    keys: dict[str, Any] = {}
    for _, d in combo:
        keys.update(d)
    kept = _applicable(keys, fixed, default_method)
    parts = []
    for label, d in combo:
        shown = {k: v for k, v in d.items() if k in kept}
        if not shown:
            continue  # every key of this value means nothing for the cell's method
        parts.append(label if label is not None else _arm_label(shown))
    return " · ".join(parts), kept


def _arm_specs(spec: SweepSpec, axes: Mapping[str, list[Entry]], seed_axis: list[Entry] | None,
               default_method: str) -> list[_ArmSpec]:
    """The grid's product, then each [[arm]] crossed with the axes it does not set itself;
    an arm that sets seed itself is not crossed with the seed axis."""
    arm_specs: list[_ArmSpec] = []
    if axes or not spec.arms:
        for combo in itertools.product(*axes.values()):
            label, keys = _combine(combo, {}, default_method)
            arm_specs.append(_ArmSpec(label or "base", keys, seed_axis, None, tuple(keys)))
    for arm_name, fixed in spec.arms:
        free = {k: v for k, v in axes.items() if not any(key in fixed for _, d in v for key in d)}
        for combo in itertools.product(*free.values()):
            extra_label, extra = _combine(combo, fixed, default_method)
            label = arm_name + (f" · {extra_label}" if extra_label else "")
            arm_specs.append(_ArmSpec(label, {**fixed, **extra},
                                      None if SEED_KEY in fixed else seed_axis, arm_name,
                                      tuple(extra)))
    return arm_specs


def _arm_label(keys: Mapping[str, Any]) -> str:
    """``method.name=mfm data.imbalance_factor=100`` -> ``mfm · imbalance_factor=100``."""
    parts = []
    for k, v in keys.items():
        if k.endswith(".name"):  # method.name, data.name, model.name: the value says it
            parts.append(str(v))
        else:
            parts.append(f"{k.rpartition('.')[2]}={v:g}" if isinstance(v, float)
                         else f"{k.rpartition('.')[2]}={v}")
    return " · ".join(parts) or "base"


# ---------------------------------------------------------------- cells

@dataclass
class _CellBuilder:
    """The cells so far; :meth:`add` validates one more, skips or excludes it, and refuses
    one whose resolved config another cell already has."""

    spec: SweepSpec
    skipped: list[str] | None
    cells: list[Cell] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # canonical config -> the cell with it

    def add(self, cell_base: dict[str, Any], arm: _ArmSpec, entry: Entry | None) -> None:
        label = arm.label
        overrides = dict(arm.keys)
        if entry is not None:
            overrides.update(entry[1])
        seed = None if entry is None else entry[1].get(SEED_KEY)
        shown = visible(label, 120) + ("" if seed is None else f", seed {show(seed)}")
        where = f"cell {len(self.cells) + 1} ({shown})"
        d = cell_base
        for k, v in overrides.items():
            d = _merge(d, _toml_override(k, v))
        try:
            cfg = config_from_dict(d)
        except ConfigError as e:
            if self.spec.skip_invalid:  # an ablation: cells the rules refuse are left out
                if self.skipped is not None:
                    self.skipped.append(f"{where}: {e}")
                return
            raise SweepError(f"{where}: {e}") from None
        if _excluded(_flat(cfg), self.spec.exclude):
            return
        cell = Cell(index=len(self.cells), arm=label, seed=cfg.seed, overrides=overrides,
                    config=cfg, arm_table=arm.table,
                    axis_keys=(*arm.axis_keys, *(entry[1] if entry is not None else ())))
        canon = json.dumps(cell.resolved, sort_keys=True)
        if canon in self.seen:
            raise SweepError(f"{where}: the same settings as {self.seen[canon]}; leave one out "
                             "(an [[exclude]] rule or a different value)")
        self.seen[canon] = where
        self.cells.append(cell)


def _same(a: Any, b: Any) -> bool:
    """A config value equals a TOML value (a config holds tuples where TOML gives lists)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):  # true is not 1 here
        return type(a) is type(b) and a == b
    return bool(a == b)


def _excluded(values: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> bool:
    """A rule matches a cell when every key it names has that value; a key that does not
    apply to the cell's method (mfm.meta_interval for ce) never matches."""
    method = values.get("method.name")

    def holds(k: str, v: Any) -> bool:
        methods = applies_to(k)
        return (methods is None or method in methods) and _same(values.get(k), v)

    return any(all(holds(k, v) for k, v in rule.items()) for rule in rules)


def _prune(base: Mapping[str, Any], method: str) -> dict[str, Any]:
    """The base without the keys that do not apply to ``method`` (a base or saved config
    that tunes mfm.* still serves a grid over methods: its ce cells leave mfm.* out)."""
    keys = config_keys()
    out: dict[str, Any] = {}
    for sec, vals in base.items():
        if isinstance(vals, dict):
            kept = {k: v for k, v in vals.items()
                    if f"{sec}.{k}" not in keys
                    or (methods := applies_to(f"{sec}.{k}")) is None or method in methods}
            if kept or not vals:
                out[sec] = kept
        else:
            out[sec] = vals
    return out


def _toml_override(key: str, value: Any) -> dict[str, Any]:
    """A dotted key and a TOML value -> a nested dict fragment (typed as TOML gave it)."""
    if "." not in key:
        return {key: value}
    sec, _, name = key.partition(".")
    return {sec: {name: value}}


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flat(cfg: Config) -> dict[str, Any]:
    from mfm.config import _flatten_config  # the one flattening of a Config

    return _flatten_config(cfg)
