"""A sweep file is data: a base, a grid of axes, named arms and exclusions -> cells.

```toml
name = "methods on digits-LT"       # optional; --name wins
dataset = "digits-if10"             # optional: a saved dataset spec as the base's data
config = "mfm-default"              # optional: a saved method config (NAME or NAME@VERSION)
max_cells = 200                     # optional cap; the hard default is 10,000

[data]                              # any run settings, as in a run's TOML file
name = "digits"
[train]
epochs = 5

[grid]                              # any config key -> a list of values
"method.name" = ["ce", "balanced_softmax", "mfm"]
"data.imbalance_factor" = [10, 100]
seed = [0, 1, 2]

[[arm]]                             # an arm that is not a product of the axes
name = "mfm on ce's loss"
"method.name" = "mfm"
"mfm.base_loss" = "ce"

[[exclude]]                         # cells matching every key/value here are left out
"method.name" = "ce"
"data.imbalance_factor" = 10
```

Axes can move several keys together: a linked axis ``"seed,data.seed" = [[0, 0], [1, 1]]``
(the training seed and the split's seed as one axis), or one ``[[grid.NAME]]`` table per value
with an optional ``label`` — a dataset variant is several ``data.*`` keys at once:

```toml
[[grid.data]]                       # keys of a section may be bare inside [[grid.<section>]]
label = "fashion-mnist-LT IF100"
name = "fashion-mnist"
imbalance_factor = 100
[[grid.data]]
label = "digits-LT IF10"
name = "digits"
imbalance_factor = 10
"train.many_threshold" = 60         # any other key, quoted and dotted
```

``skip_invalid = true`` leaves out the cells the config rules refuse (an ablation over every
combination) instead of refusing the file; the plan says how many.

The grid's product (without ``seed``) gives the arms; each ``[[arm]]`` is one more arm, crossed
with the grid axes it does not set itself (so it gets the same seeds and imbalance factors). A
cell is an arm at one seed. Every cell is built into a validated Config before anything is
queued: all or nothing, and an error names the cell and the key.

Torch-free: the CLI and the TUI plan sweeps without loading the engine.
"""

from __future__ import annotations

import difflib
import itertools
import json
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfm.config import Config, ConfigError, applies_to, config_from_dict, config_to_dict, describe
from mfm.text import check_name, visible

__all__ = ["SweepError", "SweepSpec", "Cell", "MAX_CELLS", "parse_sweep", "read_sweep",
           "expand", "SEED_KEY", "bundled_sweeps", "find_sweep_file", "collect_arms"]

MAX_CELLS = 10_000
SEED_KEY = "seed"
_TOP_STRINGS = ("name", "dataset", "config")
_TOP_TABLES = ("grid", "arm", "exclude")
_KEYS = {f.key for f in describe()}


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

    @property
    def resolved(self) -> dict[str, Any]:
        return config_to_dict(self.config)


def _nearest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(_KEYS), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(close)}?" if close else \
        " (see python -c 'from mfm.config import describe' for every key)"


def _check_key(where: str, key: str) -> None:
    if key not in _KEYS:
        raise SweepError(f"{where}: unknown key {visible(repr(key), 80)}{_nearest(key)}")


def _show(value: Any) -> str:
    return visible(repr(value), 60)


def _plain(value: Any) -> bool:
    """A value a config key can hold (and the records can store as JSON): no tables, dates."""
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (str, int, float, bool))


def parse_sweep(data: Mapping[str, Any], *, text: str = "", default_name: str = "sweep"
                ) -> SweepSpec:
    """A sweep file's TOML (as a dict) -> SweepSpec; structural errors raise SweepError."""
    base: dict[str, Any] = {}
    tops: dict[str, str | None] = {k: None for k in _TOP_STRINGS}
    max_cells = None
    skip_invalid = False
    for key, value in data.items():
        if key in _TOP_STRINGS:
            if not isinstance(value, str) or not value.strip():
                raise SweepError(f"{key}: expected a non-empty string, got {_show(value)}")
            tops[key] = value.strip()
        elif key == "max_cells":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SweepError(f"max_cells: expected an integer >= 1, got {_show(value)}")
            max_cells = value
        elif key == "skip_invalid":
            if not isinstance(value, bool):
                raise SweepError(f"skip_invalid: expected true or false, got {_show(value)}")
            skip_invalid = value
        elif key in _TOP_TABLES:
            continue
        else:
            base[key] = value
    name = tops["name"] or default_name
    if (why := check_name("name", name)) is not None:
        raise SweepError(why)

    grid_raw = data.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise SweepError("grid: expected a table of key = [values]")
    grid: dict[str, list[Any]] = {}
    linked: list[tuple[str, list[tuple[str | None, dict[str, Any]]]]] = []
    for key, values in grid_raw.items():
        if isinstance(values, dict):  # [grid.method] name = [...] written as a sub-table
            raise SweepError(f"grid.{key}: write dotted keys in quotes, e.g. "
                             f"\"{key}.name\" = [...], or one [[grid.{key}]] table per value")
        if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
            linked.append((key, _table_axis(key, values)))
            continue
        if "," in key:
            linked.append((key, _linked_axis(key, values)))
            continue
        _check_key("grid", key)
        if not isinstance(values, list):
            raise SweepError(f"grid.{key}: expected a list of values, got {_show(values)}")
        if not values:
            raise SweepError(f"grid.{key}: empty axis (give at least one value)")
        if bad := [v for v in values if not _plain(v)]:
            raise SweepError(f"grid.{key}: expected strings, numbers, booleans or lists of "
                             f"them, got {_show(bad[0])}")
        if len({repr(v) for v in values}) != len(values):
            raise SweepError(f"grid.{key}: a value is listed twice ({_show(values)})")
        grid[key] = list(values)

    arms_raw = data.get("arm", [])
    if not isinstance(arms_raw, list):
        raise SweepError("arm: write each arm as an [[arm]] table")
    arms: list[tuple[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for i, arm in enumerate(arms_raw, 1):
        if not isinstance(arm, dict) or not isinstance(arm.get("name"), str) \
                or not arm["name"].strip():
            raise SweepError(f"arm {i}: needs name = \"...\"")
        arm_name = arm["name"].strip()
        if (why := check_name(f"arm {i} name", arm_name)) is not None:
            raise SweepError(why)
        if arm_name in seen:
            raise SweepError(f"arm {i}: the name {_show(arm_name)} is used twice")
        seen.add(arm_name)
        keys = {k: v for k, v in arm.items() if k != "name"}
        if not keys:
            raise SweepError(f"arm {_show(arm_name)}: sets no key")
        for k, v in keys.items():
            if isinstance(v, dict):
                raise SweepError(f"arm {_show(arm_name)}: write dotted keys in quotes, e.g. "
                                 f"\"{k}.name\" = ...")
            _check_key(f"arm {_show(arm_name)}", k)
            if not _plain(v):
                raise SweepError(f"arm {_show(arm_name)}: {k}: expected a string, number, "
                                 f"boolean or list of them, got {_show(v)}")
        arms.append((arm_name, keys))

    exclude_raw = data.get("exclude", [])
    if not isinstance(exclude_raw, list) or not all(isinstance(x, dict) for x in exclude_raw):
        raise SweepError("exclude: write each rule as an [[exclude]] table of key = value")
    for i, rule in enumerate(exclude_raw, 1):
        if not rule:
            raise SweepError(f"exclude {i}: an empty rule would exclude every cell")
        for k, v in rule.items():
            _check_key(f"exclude {i}", k)
            if not _plain(v):
                raise SweepError(f"exclude {i}: {k}: expected a string, number, boolean or "
                                 f"list of them, got {_show(v)}")
    seed_axes = [k for k, entries in linked if any(SEED_KEY in d for _, d in entries)]
    if len(seed_axes) + (SEED_KEY in grid) > 1:
        raise SweepError(f"grid: seed is set by more than one axis ({', '.join(seed_axes)}"
                         f"{', seed' if SEED_KEY in grid else ''})")
    return SweepSpec(name=name, base=base, dataset=tops["dataset"], config=tops["config"],
                     grid=grid, arms=arms, exclude=list(exclude_raw), max_cells=max_cells,
                     text=text, linked=linked, skip_invalid=skip_invalid,
                     order=tuple(grid_raw))


def _linked_axis(axis: str, values: Any) -> list[tuple[str | None, dict[str, Any]]]:
    """``"seed,data.seed" = [[0, 0], [1, 1]]``: the keys move together."""
    keys = [k.strip() for k in axis.split(",")]
    for k in keys:
        _check_key(f"grid.{axis}", k)
    if len(set(keys)) != len(keys):
        raise SweepError(f"grid.{axis}: a key is named twice")
    if not isinstance(values, list) or not values:
        raise SweepError(f"grid.{axis}: expected a non-empty list of [{', '.join(keys)}] lists")
    out: list[tuple[str | None, dict[str, Any]]] = []
    for v in values:
        if not isinstance(v, list) or len(v) != len(keys) or not all(_plain(x) for x in v):
            raise SweepError(f"grid.{axis}: each value must be a list of {len(keys)} plain "
                             f"values, got {_show(v)}")
        out.append((None, dict(zip(keys, v))))
    if len({repr(sorted(d.items())) for _, d in out}) != len(out):
        raise SweepError(f"grid.{axis}: a value is listed twice")
    return out


def _table_axis(axis: str, tables: list[dict[str, Any]]
                ) -> list[tuple[str | None, dict[str, Any]]]:
    """``[[grid.dataset]]`` tables, one value of the axis each: quoted dotted keys (or bare
    field names when the axis is named after a section, ``[[grid.data]] name = ...``) and an
    optional ``label`` naming the value in arm names."""
    sections = {k.partition(".")[0] for k in _KEYS if "." in k}
    out = []
    labels: set[str] = set()
    for i, table in enumerate(tables, 1):
        where = f"grid.{axis} {i}"
        label = table.get("label")
        if label is not None:
            if not isinstance(label, str) or not label.strip():
                raise SweepError(f"{where}: label must be a non-empty string")
            if (why := check_name(f"{where} label", label)) is not None:
                raise SweepError(why)
            if label in labels:
                raise SweepError(f"{where}: the label {_show(label)} is used twice")
            labels.add(label)
        keys: dict[str, Any] = {}
        for k, v in table.items():
            if k == "label":
                continue
            full = f"{axis}.{k}" if axis in sections and "." not in k else k
            _check_key(where, full)
            if not _plain(v):
                raise SweepError(f"{where}: {full}: expected a string, number, boolean or list "
                                 f"of them, got {_show(v)}")
            keys[full] = v
        if not keys:
            raise SweepError(f"{where}: sets no key")
        out.append((label, keys))
    return out


BUNDLED = Path(__file__).parent / "bundled"


def bundled_sweeps() -> list[str]:
    """Names of the sweep files that ship with mfm (``mfm sweep run quick``)."""
    return sorted(p.stem for p in BUNDLED.glob("*.toml"))


def find_sweep_file(ref: str | Path) -> Path:
    """A path, or the name of a bundled sweep when no such file exists."""
    p = Path(ref)
    if not p.exists() and p.suffix == "" and (BUNDLED / f"{p.name}.toml").is_file():
        return BUNDLED / f"{p.name}.toml"
    return p


def read_sweep(path: str | Path) -> SweepSpec:
    """Read and parse a sweep file (or a bundled sweep by name); unreadable or non-TOML
    files raise SweepError."""
    p = find_sweep_file(path)
    if not p.exists():
        raise SweepError(f"FILE: no file {visible(str(p))} (bundled sweeps: "
                         f"{', '.join(bundled_sweeps())})")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"FILE: cannot read {visible(str(p))}: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"FILE: {visible(str(p))} is not valid TOML: {e}") from None
    return parse_sweep(data, text=text, default_name=p.stem)


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
    out: dict[str, Any] = {}
    for sec, vals in base.items():
        if isinstance(vals, dict):
            kept = {k: v for k, v in vals.items()
                    if f"{sec}.{k}" not in _KEYS
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


def expand(spec: SweepSpec, *, base_dict: Mapping[str, Any] | None = None,
           max_cells: int | None = None, skipped: list[str] | None = None) -> list[Cell]:
    """Every cell of the sweep, validated. ``base_dict`` is the nested base the saved spec and
    config resolve to (the caller reads them from the records), under the file's own base.

    Raises SweepError naming the cell (its arm and seed) and the key; with the file's
    ``skip_invalid = true`` such cells are left out instead and described in ``skipped``."""
    base = _merge(dict(base_dict or {}), spec.base)
    # every axis as a list of (label or None, keys it sets); the seed axis apart
    Entry = tuple[str | None, dict[str, Any]]
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
    limit = max_cells or spec.max_cells or MAX_CELLS
    n_arm_cells = 1
    for values in axes.values():
        n_arm_cells *= len(values)
    estimate = (n_arm_cells + len(spec.arms) * n_arm_cells) * len(seed_axis or [None])
    if estimate > limit:
        raise SweepError(f"grid: {estimate} cells is more than the limit of {limit} "
                         "(raise it with --max-cells or max_cells)")

    default_method = str(base.get("method", {}).get("name", Config().method.name))

    def applicable(keys: dict[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
        """Grid values of keys that mean nothing for the cell's method are dropped (a grid
        over mfm.meta_interval gives ce one arm, not one per interval)."""
        method = str({**keys, **fixed}.get("method.name", default_method))
        return {k: v for k, v in keys.items()
                if (methods := applies_to(k)) is None or method in methods}

    def combine(combo: Sequence[Entry], fixed: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        keys: dict[str, Any] = {}
        for _, d in combo:
            keys.update(d)
        kept = applicable(keys, fixed)
        parts = []
        for label, d in combo:
            shown = {k: v for k, v in d.items() if k in kept}
            if not shown:
                continue  # every key of this value means nothing for the cell's method
            parts.append(label if label is not None else _arm_label(shown))
        return " · ".join(parts), kept

    # (label, keys, seeds): an arm that sets seed itself is not crossed with the seed axis
    arm_specs: list[tuple[str, dict[str, Any], list[Entry] | None]] = []
    if axes or not spec.arms:
        for combo in itertools.product(*axes.values()):
            label, keys = combine(combo, {})
            arm_specs.append((label or "base", keys, seed_axis))
    for arm_name, fixed in spec.arms:
        free = {k: v for k, v in axes.items() if not any(key in fixed for _, d in v for key in d)}
        for combo in itertools.product(*free.values()):
            extra_label, extra = combine(combo, fixed)
            label = arm_name + (f" · {extra_label}" if extra_label else "")
            arm_specs.append((label, {**fixed, **extra},
                              None if SEED_KEY in fixed else seed_axis))

    cells: list[Cell] = []
    arm_names: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}  # canonical resolved config -> the cell that has it
    for label, keys, arm_seeds in arm_specs:
        if label in arm_names:
            if arm_names[label] == keys:
                continue  # the same arm again after dropping keys that do not apply
            raise SweepError(f"arm {_show(label)}: two arms resolve to this name; rename one")
        arm_names[label] = keys
        method = str(keys.get("method.name", default_method))
        cell_base = _prune(base, method)
        for entry in (arm_seeds if arm_seeds is not None else [None]):
            overrides = dict(keys)
            if entry is not None:
                overrides.update(entry[1])
            seed = None if entry is None else entry[1].get(SEED_KEY)
            shown = visible(label, 120) + ("" if seed is None else f", seed {_show(seed)}")
            where = f"cell {len(cells) + 1} ({shown})"
            d = cell_base
            for k, v in overrides.items():
                d = _merge(d, _toml_override(k, v))
            try:
                cfg = config_from_dict(d)
            except ConfigError as e:
                if spec.skip_invalid:  # an ablation: cells the rules refuse are left out
                    if skipped is not None:
                        skipped.append(f"{where}: {e}")
                    continue
                raise SweepError(f"{where}: {e}") from None
            if _excluded(_flat(cfg), spec.exclude):
                continue
            canon = json.dumps(config_to_dict(cfg), sort_keys=True)
            if canon in seen:
                raise SweepError(f"{where}: the same settings as {seen[canon]}; leave one out "
                                 "(an [[exclude]] rule or a different value)")
            seen[canon] = where
            cells.append(Cell(index=len(cells), arm=label, seed=cfg.seed,
                              overrides=overrides, config=cfg))
    if not cells:
        raise SweepError("grid: every cell is excluded")
    return cells


def collect_arms(cells: Sequence[Cell]) -> list[str]:
    """Arm names in the order they first appear."""
    return list(dict.fromkeys(c.arm for c in cells))

