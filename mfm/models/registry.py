"""Model registry: ``@register_model(name)`` on a factory, ``create_model(name, ...)`` to build.

A factory takes keyword arguments ``num_classes``, ``in_channels`` and ``classifier`` and
returns an ``nn.Module`` on the CPU; the caller moves it to a device. This module holds only the
table and the decorator; model modules (``resnet``) register into it, and ``mfm.models``
imports them after it, so the table is full once the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model factory under ``name``."""
    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = factory
        return factory
    return deco


def list_models() -> list[str]:
    """Registered model names, in registration order."""
    return list(_MODELS)


def create_model(name: str, *, num_classes: int, in_channels: int = 3,
                 classifier: str = "linear") -> nn.Module:
    """Build model ``name`` with a ``linear`` or ``cosine`` classifier (on the CPU)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(_MODELS)}")
    if classifier not in ("linear", "cosine"):
        raise ValueError(f"classifier must be linear | cosine (got {classifier!r})")
    return _MODELS[name](num_classes=num_classes, in_channels=in_channels, classifier=classifier)

