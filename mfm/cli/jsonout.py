"""Strict JSON on stdout: non-finite floats (a diverged loss, an empty group's accuracy) become
null, since bare ``NaN`` / ``Infinity`` are not JSON and break ``jq`` and every strict parser."""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["finite", "dumps"]


def finite(value: Any) -> Any:
    """``value`` with every non-finite float inside it (dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes NaN or Infinity (``allow_nan=False`` guards it)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)
