"""CIFAR ResNets with modulation sites, behind a timm-style registry."""

from .registry import create_model, list_models, register_model
from .resnet import CifarResNet, NormedLinear  # after the registry: registers the ResNets
from .sites import ModulationSite, list_sites, set_modulation

__all__ = ["CifarResNet", "ModulationSite", "NormedLinear", "create_model", "list_models",
           "list_sites", "register_model", "set_modulation"]
