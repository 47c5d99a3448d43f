"""Method registry: ``@register_method(name)`` on a Method subclass, ``create_method`` to build.

Adding a method is a one-module job: put a module in ``mfm/methods/`` whose class carries
``@register_method("name")``; every module of this package is imported on first use of the
registry (and add the name to ``mfm.config.METHOD_NAMES``, which a test keeps in step).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import TypeVar

from mfm.config import METHOD_NAMES, Config

from .base import Method

__all__ = ["create_method", "list_methods", "register_method"]

_METHODS: dict[str, type[Method]] = {}
_NOT_METHODS = {"base", "registry", "transfer"}
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


def create_method(config: Config, class_counts: Sequence[int]) -> Method:
    """Build the method ``config.method.name`` of the run ``config`` (its method section, the
    epoch count and, for mfm and mwnet, their own sections) for these per-class training
    counts."""
    _load_builtin()
    name = config.method.name
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(list_methods())}")
    return _METHODS[name](config, class_counts)


def _load_builtin() -> None:
    """Import every module of mfm.methods (a no-op once imported): their decorators register."""
    package = __name__.rpartition(".")[0]
    path = importlib.import_module(package).__path__
    for info in pkgutil.iter_modules(path):
        if not info.name.startswith("_") and info.name not in _NOT_METHODS:
            importlib.import_module(f"{package}.{info.name}")
