"""Model registry: ``@register_model(name)`` on a factory, ``create_model(name, ...)`` to build.

A factory takes keyword arguments ``num_classes``, ``in_channels`` and ``classifier`` and
returns an ``nn.Module`` on the CPU; the caller moves it to a device. This module holds only the
table, the decorator and the contract below; model modules (``resnet``) register into it, and
``mfm.models`` imports them after it, so the table is full once the package is imported.

Parameter groups: a model class declares which of its submodules are its classifier and its
last stage, as class attributes holding module paths (``classifier_params = ("classifier",)``,
``last_stage_params = ("layer3",)``). Only the model spells these names; everyone else (the
virtual step's ``virtual_params``, the modulator's head) asks :func:`declared_params` or
:func:`classifier_module`. A model that declares none still trains; what needs a group raises
:class:`UndeclaredParams`, naming the attribute.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["PARAM_GROUPS", "UndeclaredParams", "classifier_module", "create_model",
           "declared_params", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}

# group -> the class attribute a model declares it with (a tuple of module paths)
PARAM_GROUPS = {"classifier": "classifier_params", "last_stage": "last_stage_params"}


class UndeclaredParams(ValueError):
    """The model declares no such parameter group (or one that matches no parameter)."""

    def __init__(self, model: nn.Module, group: str, detail: str):
        super().__init__(f"{type(model).__name__} {detail}")
        self.model_class = type(model).__name__
        self.group = group


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


def _declared(model: nn.Module, group: str) -> tuple[str, ...]:
    if group not in PARAM_GROUPS:
        raise ValueError(f"parameter group must be one of {' | '.join(PARAM_GROUPS)} "
                         f"(got {group!r})")
    attr = PARAM_GROUPS[group]
    paths = getattr(model, attr, None)
    if not paths:
        raise UndeclaredParams(model, group, f"declares no {group} parameters (class "
                                             f"attribute {attr}: a tuple of module paths)")
    return tuple(paths)


def declared_params(model: nn.Module, group: str) -> list[str]:
    """Names (as in ``named_parameters()``, in its order) of the parameters in the modules the
    model declares as ``group`` ("classifier" or "last_stage"). :class:`UndeclaredParams` when
    it declares none, or declares paths that hold no parameter."""
    paths = _declared(model, group)
    names = [n for n, _ in model.named_parameters()
             if any(n.startswith(p + ".") for p in paths)]
    if not names:
        raise UndeclaredParams(model, group, f"declares {PARAM_GROUPS[group]} = {paths}, which "
                                             f"hold no parameter")
    return names


def classifier_module(model: nn.Module) -> nn.Module:
    """The model's declared classifier: the one module of its ``classifier_params``."""
    paths = _declared(model, "classifier")
    if len(paths) != 1:
        raise UndeclaredParams(model, "classifier", f"declares {len(paths)} classifier modules "
                                                    f"{paths}; one is needed here")
    return model.get_submodule(paths[0])
