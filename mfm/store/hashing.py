"""The identity of a resolved config: sha256 of its canonical JSON (sorted keys, no spaces).

Two runs with the same hash trained the same settings; a sweep reuses a finished run whose
hash equals its cell's. The hash covers ``mfm.config.identity_dict`` of the config: keys that
say how a run executes (``train.threads``) are not part of what it trained, and keys added
later count only away from their defaults (the rule is written there, once). Floats are
written by Python's shortest repr, so 10 and 10.0 differ: resolved configs always hold typed
values (10.0 for a float key), so they never do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from mfm.config import identity_dict

__all__ = ["config_hash", "canonical_json"]


def canonical_json(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(config: Mapping[str, Any] | str) -> str:
    """The hash of a resolved config (a dict, or its JSON text); ValueError if unreadable."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as e:
            raise ValueError(f"not a config: {e}") from None
    if not isinstance(config, Mapping):
        raise ValueError("not a config: expected a JSON object")
    return hashlib.sha256(canonical_json(identity_dict(config)).encode("utf-8")).hexdigest()
