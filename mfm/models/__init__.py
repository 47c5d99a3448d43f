"""CIFAR ResNets with modulation sites, behind a timm-style registry."""

from .registry import (
    PARAM_GROUPS,
    UndeclaredParams,
    classifier_module,
    create_model,
    declared_params,
    list_models,
    register_model,
)
from .resnet import CifarResNet, NormedLinear  # after the registry: registers the ResNets
from .sites import ModulationSite, list_sites, set_modulation

__all__ = ["PARAM_GROUPS", "CifarResNet", "ModulationSite", "NormedLinear", "UndeclaredParams",
           "classifier_module", "create_model", "declared_params", "list_models", "list_sites",
           "register_model", "set_modulation"]
