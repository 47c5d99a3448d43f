"""Method registry: ``@register_method(name)`` on a Method subclass, ``create_method`` to build.

Adding a method is a one-module job: put a module in ``mfm/methods/`` whose class carries
``@register_method("name")``; every module of this package is imported on first use of the
registry (and add the name to ``mfm.config.METHOD_NAMES``, which a test keeps in step).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Callable, Sequence, TypeVar

from mfm.config import METHOD_NAMES, MethodConfig

from .base import Method

__all__ = ["create_method", "list_methods", "register_method"]

_METHODS: dict[str, type[Method]] = {}
_NOT_METHODS = {"base", "registry"}
M = TypeVar("M", bound=type[Method])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register a Method subclass under ``name`` and set its ``name``."""
    def deco(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"register_method({name!r}) needs a Method subclass, got {cls!r}")
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        return cls
    return deco


def list_methods() -> list[str]:
    """Registered method names, in the order of ``mfm.config.METHOD_NAMES`` where listed."""
    _load_builtin()
    order = {n: i for i, n in enumerate(METHOD_NAMES)}
    return sorted(_METHODS, key=lambda n: (order.get(n, len(order)), n))


def create_method(cfg: MethodConfig, class_counts: Sequence[int], epochs: int,
                  run_config: Any = None) -> Method:
    """Build the method ``cfg.name`` for these per-class training counts and epoch count.
    Methods with a config section of their own (mfm, mwnet) read it from ``run_config``."""
    _load_builtin()
    if cfg.name not in _METHODS:
        raise ValueError(f"unknown method {cfg.name!r}; available: {', '.join(list_methods())}")
    cls = _METHODS[cfg.name]
    if getattr(cls, "needs_run_config", False):
        if run_config is None:
            raise ValueError(f"method {cfg.name!r} needs the run config (its own section)")
        return cls(cfg, class_counts, epochs, run_config=run_config)
    return cls(cfg, class_counts, epochs)


def _load_builtin() -> None:
    """Import every module of mfm.methods (a no-op once imported): their decorators register."""
    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_") and info.name not in _NOT_METHODS:
            importlib.import_module(f"{package}.{info.name}")
