"""Training methods for long-tailed recognition, one small module each, behind a registry.

Names load on first use, so that ``mfm.methods.transfer`` (torch-free: reading a modulator's
description when a transfer run is queued) can be imported without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Method", "create_method", "list_methods", "register_method"]

_HOME = {"Method": "base", "create_method": "registry", "list_methods": "registry",
         "register_method": "registry"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'mfm.methods' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mfm.methods.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
