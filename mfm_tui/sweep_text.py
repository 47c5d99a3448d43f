"""Sweeps as text, both ways (pure functions, torch- and SQLAlchemy-free):

- a sweep built in the form (a saved dataset spec, a saved config, ``key = v1, v2`` lines)
  -> the TOML text of a sweep file -> ``mfm.sweeps.spec.parse_sweep``: the same path as a
  file, so a built sweep is recorded with a file text that ``mfm sweep run`` reads back;
- a plan, an arm row, a per-class row -> the short texts the screens show.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mfm.text import visible

if TYPE_CHECKING:
    from mfm.sweeps.plan import SweepPlan
    from mfm.sweeps.spec import SweepSpec
    from mfm.sweeps.table import ArmRow

__all__ = ["AxesError", "parse_axes", "sweep_toml", "build_sweep", "plan_summary",
           "duration_text", "toml_value", "arm_cells", "ARM_COLUMNS", "arm_columns"]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class AxesError(ValueError):
    """A bad ``key = values`` line: one line naming the line and the key."""


def _known_keys() -> set[str]:
    from mfm.config import describe

    return {f.key for f in describe()}


def _split_values(text: str) -> list[str]:
    """``ce, "a, b", [0.5, 0.75]`` -> the three values: commas inside quotes or brackets
    do not split."""
    out, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and text[i - 1] != "\\":
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [v.strip() for v in out]


def _value(token: str) -> Any:
    """A TOML value when the token is one (numbers, true/false, "strings", [lists]), else
    the token itself as a string (``balanced_softmax``)."""
    try:
        return tomllib.loads(f"v = {token}")["v"]
    except tomllib.TOMLDecodeError:
        return token


def parse_axes(text: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The form's lines -> (settings for every cell, axes). ``key = v`` (one value) sets the
    key for every cell; ``key = v1, v2, ...`` is an axis of the grid. Blank lines and lines
    starting with ``#`` are skipped. AxesError names the line."""
    known = _known_keys()
    base: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, rest = line.partition("=")
        key = key.strip().strip("\"'")
        where = f"axes line {n}"
        if not sep or not key:
            raise AxesError(f"{where}: expected key = value(s), e.g. method.name = ce, mfm "
                            f"(got {visible(repr(line), 60)})")
        if not _KEY.match(key) or key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise AxesError(f"{where}: unknown key {visible(repr(key), 60)}{hint}")
        if key in base or key in axes:
            raise AxesError(f"{where}: {key} is given twice")
        tokens = _split_values(rest)
        if any(not t for t in tokens):
            raise AxesError(f"{where}: {key}: an empty value (values are separated by commas)")
        values = [_value(t) for t in tokens]
        if len(values) == 1:
            base[key] = values[0]
        else:
            axes[key] = values
    return base, axes


def toml_value(value: Any) -> str:
    """A plain value (str, int, float, bool, lists of them) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise AxesError(f"cannot write {visible(repr(value), 60)} as a sweep value")


def sweep_toml(name: str, *, dataset: str | None, config: str | None,
               base: Mapping[str, Any], axes: Mapping[str, Sequence[Any]]) -> str:
    """The sweep file's text: name, saved spec and config, settings, then the grid."""
    out = [f"# built in mfm-tui; run again with: mfm sweep run FILE\nname = {toml_value(name)}"]
    if dataset:
        out.append(f"dataset = {toml_value(dataset)}")
    if config:
        out.append(f"config = {toml_value(config)}")
    for key, value in base.items():  # dotted keys before any table header: the base
        out.append(f"{key} = {toml_value(value)}")
    if axes:
        out.append("\n[grid]")
        out.extend(f"{json.dumps(k)} = {toml_value(list(v))}" for k, v in axes.items())
    return "\n".join(out) + "\n"


def build_sweep(name: str, *, dataset: str | None, config: str | None,
                axes_text: str) -> SweepSpec:
    """The form's fields -> a parsed sweep (its ``text`` the TOML it came from). AxesError
    or mfm.sweeps.spec.SweepError with one line."""
    from mfm.sweeps.spec import parse_sweep

    name = name.strip()
    if not name:
        raise AxesError("name: a sweep needs a name")
    base, axes = parse_axes(axes_text)
    text = sweep_toml(name, dataset=dataset, config=config, base=base, axes=axes)
    return parse_sweep(tomllib.loads(text), text=text, default_name=name)


def duration_text(seconds: float) -> str:
    from mfm.sweeps.plan import duration_text as text

    return text(seconds)


def plan_summary(plan: SweepPlan) -> str:
    """A plan in one line (the words of ``mfm sweep plan``)."""
    return plan.summary(failed_hint="resume them from the sweep")


# -- the arm table -----------------------------------------------------------------------------

ARM_COLUMNS: tuple[tuple[str, str], ...] = (
    ("mark", " "), ("arm", "arm"), ("done", "done"), ("acc", "acc %"), ("many", "many %"),
    ("medium", "med %"), ("few", "few %"), ("val_acc", "val %"),
    ("seconds_per_epoch", "s/ep"))


def arm_columns(rows: Sequence[ArmRow]) -> tuple[tuple[str, str], ...]:
    """The arm table's columns; validation accuracy only where some run recorded it."""
    has_val = any(r.stat("val_acc") is not None for r in rows)
    return tuple(c for c in ARM_COLUMNS if c[0] != "val_acc" or has_val)


def arm_cells(row: ArmRow, columns: Sequence[tuple[str, str]], *, marked: bool,
              width: int = 40) -> tuple[str, ...]:
    """One arm's cells: mean ± std over its finished seeds, the mean alone for one seed."""
    from mfm.sweeps.table import fmt_mean_std

    out = []
    for key, _ in columns:
        if key == "mark":
            out.append("●" if marked else " ")
        elif key == "arm":
            text = visible(row.arm)
            out.append(text if len(text) <= width else text[: width - 1] + "…")
        elif key == "done":
            out.append(f"{row.finished}/{row.cells}")
        elif key == "seconds_per_epoch":
            ms = row.stat(key)
            out.append("—" if ms is None else f"{ms[0]:.2f}")
        else:
            out.append(fmt_mean_std(row.stat(key), n=len(row.values.get(key, []))))
    return tuple(out)
