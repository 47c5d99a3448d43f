"""Reading a sweep file: TOML -> :class:`~mfm.sweeps.model.SweepSpec`, every structural error
one line naming the key (``parse_sweep``), and the sweep files that ship with mfm."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mfm.sweeps.model import (
    SEED_KEY,
    Entry,
    SweepError,
    SweepSpec,
    check_key,
    config_keys,
    is_plain,
    show,
)
from mfm.text import check_name, visible

__all__ = ["BUNDLED", "bundled_sweeps", "find_sweep_file", "parse_sweep", "read_sweep"]

_TOP_STRINGS = ("name", "dataset", "config")
_TOP_TABLES = ("grid", "arm", "exclude")

BUNDLED = Path(__file__).parent / "bundled"


def parse_sweep(data: Mapping[str, Any], *, text: str = "", default_name: str = "sweep"
                ) -> SweepSpec:
    """A sweep file's TOML (as a dict) -> SweepSpec; structural errors raise SweepError."""
    base, tops, max_cells, skip_invalid = _top_level(data)
    name = tops["name"] or default_name
    if (why := check_name("name", name)) is not None:
        raise SweepError(why)
    grid_raw = data.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise SweepError("grid: expected a table of key = [values]")
    grid, linked = _grid(grid_raw)
    arms = _arms(data.get("arm", []))
    if "grid" in data and not grid_raw and not arms:
        raise SweepError("grid: the table is empty: give at least one axis (key = [values]) "
                         "or an [[arm]]; a file without [grid] runs its base settings once")
    exclude = _exclude(data.get("exclude", []))
    _check_one_seed_axis(grid, linked)
    return SweepSpec(name=name, base=base, dataset=tops["dataset"], config=tops["config"],
                     grid=grid, arms=arms, exclude=exclude, max_cells=max_cells,
                     text=text, linked=linked, skip_invalid=skip_invalid,
                     order=tuple(grid_raw))


def _top_level(data: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, str | None], int | None, bool]:
    """(base run settings, the top-level strings, max_cells, skip_invalid): every key of the
    file but its tables."""
    base: dict[str, Any] = {}
    tops: dict[str, str | None] = {k: None for k in _TOP_STRINGS}
    max_cells = None
    skip_invalid = False
    for key, value in data.items():
        if key in _TOP_STRINGS:
            if not isinstance(value, str) or not value.strip():
                raise SweepError(f"{key}: expected a non-empty string, got {show(value)}")
            tops[key] = value.strip()
        elif key == "max_cells":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SweepError(f"max_cells: expected an integer >= 1, got {show(value)}")
            max_cells = value
        elif key == "skip_invalid":
            if not isinstance(value, bool):
                raise SweepError(f"skip_invalid: expected true or false, got {show(value)}")
            skip_invalid = value
        elif key in _TOP_TABLES:
            continue
        else:
            base[key] = value
    return base, tops, max_cells, skip_invalid


def _grid(grid_raw: dict[str, Any]
          ) -> tuple[dict[str, list[Any]], list[tuple[str, list[Entry]]]]:
    """(plain axes: key -> values, axes that set several keys per value) of ``[grid]``."""
    grid: dict[str, list[Any]] = {}
    linked: list[tuple[str, list[Entry]]] = []
    for key, values in grid_raw.items():
        if isinstance(values, dict):  # [grid.method] name = [...] written as a sub-table
            raise SweepError(f"grid.{key}: write dotted keys in quotes, e.g. "
                             f"\"{key}.name\" = [...], or one [[grid.{key}]] table per value")
        if isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
            linked.append((key, _table_axis(key, values)))
        elif "," in key:
            linked.append((key, _linked_axis(key, values)))
        else:
            grid[key] = _plain_axis(key, values)
    return grid, linked


def _plain_axis(key: str, values: Any) -> list[Any]:
    """``"method.name" = ["ce", "mfm"]``: one key, distinct plain values."""
    check_key("grid", key)
    if not isinstance(values, list):
        raise SweepError(f"grid.{key}: expected a list of values, got {show(values)}")
    if not values:
        raise SweepError(f"grid.{key}: empty axis (give at least one value)")
    if bad := [v for v in values if not is_plain(v)]:
        raise SweepError(f"grid.{key}: expected strings, numbers, booleans or lists of "
                         f"them, got {show(bad[0])}")
    if len({repr(v) for v in values}) != len(values):
        raise SweepError(f"grid.{key}: a value is listed twice ({show(values)})")
    return list(values)


def _linked_axis(axis: str, values: Any) -> list[Entry]:
    """``"seed,data.seed" = [[0, 0], [1, 1]]``: the keys move together."""
    keys = [k.strip() for k in axis.split(",")]
    for k in keys:
        check_key(f"grid.{axis}", k)
    if len(set(keys)) != len(keys):
        raise SweepError(f"grid.{axis}: a key is named twice")
    if not isinstance(values, list) or not values:
        raise SweepError(f"grid.{axis}: expected a non-empty list of [{', '.join(keys)}] lists")
    out: list[Entry] = []
    for v in values:
        if not isinstance(v, list) or len(v) != len(keys) or not all(is_plain(x) for x in v):
            raise SweepError(f"grid.{axis}: each value must be a list of {len(keys)} plain "
                             f"values, got {show(v)}")
        out.append((None, dict(zip(keys, v))))
    if len({repr(sorted(d.items())) for _, d in out}) != len(out):
        raise SweepError(f"grid.{axis}: a value is listed twice")
    return out


def _table_axis(axis: str, tables: list[dict[str, Any]]) -> list[Entry]:
    """``[[grid.dataset]]`` tables, one value of the axis each: quoted dotted keys (or bare
    field names when the axis is named after a section, ``[[grid.data]] name = ...``) and an
    optional ``label`` naming the value in arm names."""
    sections = {k.partition(".")[0] for k in config_keys() if "." in k}
    out = []
    labels: set[str] = set()
    for i, table in enumerate(tables, 1):
        where = f"grid.{axis} {i}"
        label = _table_label(where, table.get("label"), labels)
        keys: dict[str, Any] = {}
        for k, v in table.items():
            if k == "label":
                continue
            full = f"{axis}.{k}" if axis in sections and "." not in k else k
            check_key(where, full)
            if not is_plain(v):
                raise SweepError(f"{where}: {full}: expected a string, number, boolean or list "
                                 f"of them, got {show(v)}")
            keys[full] = v
        if not keys:
            raise SweepError(f"{where}: sets no key")
        out.append((label, keys))
    return out


def _table_label(where: str, label: Any, labels: set[str]) -> str | None:
    """A ``[[grid.NAME]]`` table's optional label, checked and distinct (added to
    ``labels``)."""
    if label is None:
        return None
    if not isinstance(label, str) or not label.strip():
        raise SweepError(f"{where}: label must be a non-empty string")
    if (why := check_name(f"{where} label", label)) is not None:
        raise SweepError(why)
    if label in labels:
        raise SweepError(f"{where}: the label {show(label)} is used twice")
    labels.add(label)
    return label


def _arms(arms_raw: Any) -> list[tuple[str, dict[str, Any]]]:
    """The ``[[arm]]`` tables: (name, dotted key -> value), names distinct."""
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
            raise SweepError(f"arm {i}: the name {show(arm_name)} is used twice")
        seen.add(arm_name)
        arms.append((arm_name, _arm_keys(arm_name, arm)))
    return arms


def _arm_keys(arm_name: str, arm: dict[str, Any]) -> dict[str, Any]:
    """The keys one arm sets (all but its name), each a config key with a plain value."""
    keys = {k: v for k, v in arm.items() if k != "name"}
    if not keys:
        raise SweepError(f"arm {show(arm_name)}: sets no key")
    for k, v in keys.items():
        if isinstance(v, dict):
            raise SweepError(f"arm {show(arm_name)}: write dotted keys in quotes, e.g. "
                             f"\"{k}.name\" = ...")
        check_key(f"arm {show(arm_name)}", k)
        if not is_plain(v):
            raise SweepError(f"arm {show(arm_name)}: {k}: expected a string, number, "
                             f"boolean or list of them, got {show(v)}")
    return keys


def _exclude(exclude_raw: Any) -> list[dict[str, Any]]:
    """The ``[[exclude]]`` rules, each non-empty, of config keys with plain values."""
    if not isinstance(exclude_raw, list) or not all(isinstance(x, dict) for x in exclude_raw):
        raise SweepError("exclude: write each rule as an [[exclude]] table of key = value")
    for i, rule in enumerate(exclude_raw, 1):
        if not rule:
            raise SweepError(f"exclude {i}: an empty rule would exclude every cell")
        for k, v in rule.items():
            check_key(f"exclude {i}", k)
            if not is_plain(v):
                raise SweepError(f"exclude {i}: {k}: expected a string, number, boolean or "
                                 f"list of them, got {show(v)}")
    return list(exclude_raw)


def _check_one_seed_axis(grid: Mapping[str, list[Any]],
                         linked: list[tuple[str, list[Entry]]]) -> None:
    seed_axes = [k for k, entries in linked if any(SEED_KEY in d for _, d in entries)]
    if len(seed_axes) + (SEED_KEY in grid) > 1:
        raise SweepError(f"grid: seed is set by more than one axis ({', '.join(seed_axes)}"
                         f"{', seed' if SEED_KEY in grid else ''})")


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
