"""A resolved config as TOML text that ``tomllib`` reads back to the same dict: the one writer
behind ``mfm show --toml`` and mfm-tui's Config tab. Torch-free, dependency-free: configs
hold only strings, numbers, booleans, lists of them and one level of tables."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["to_toml", "TomlValueError"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class TomlValueError(ValueError):
    """A value TOML cannot hold (None, a nested table inside an array, NaN is fine: TOML has
    nan and inf)."""


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _string(s: str) -> str:
    """A TOML basic string: JSON's escapes, plus \\uXXXX for every character TOML forbids
    raw (DEL) or a terminal would act on (C0/C1 controls, bidi and other format characters,
    line and paragraph separators), so the text is safe to print and reads back the same."""
    out = json.dumps(s, ensure_ascii=False)
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _UNSAFE and c not in "\t"
                   else c for c in out)


_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _value(v: Any, where: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        text = repr(v)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x, where) for x in v) + "]"
    raise TomlValueError(f"{where}: TOML cannot hold {type(v).__name__} {v!r}")


def to_toml(config: Mapping[str, Any]) -> str:
    """Top-level values first, then one ``[section]`` per table, keys in the given order."""
    lines = [f"{_key(k)} = {_value(v, k)}" for k, v in config.items()
             if not isinstance(v, Mapping) and v is not None]
    for section, values in config.items():
        if not isinstance(values, Mapping):
            continue
        if lines:
            lines.append("")
        lines.append(f"[{_key(section)}]")
        lines += [f"{_key(k)} = {_value(v, f'{section}.{k}')}" for k, v in values.items()
                  if v is not None]
    return "\n".join(lines) + "\n"
