"""CIFAR ResNets (He et al., CVPR 2016, Sec. 4.2) with modulation sites.

Follows the ResNet-32 of Meta-Weight-Net's and LDAM-DRW's official code: a 3x3 stem conv with
BN + ReLU, three stages of BasicBlocks (stride 1, 2, 2; widths 16/32/64), option-A shortcuts
(parameter-free: spatial subsampling ``x[:, :, ::2, ::2]`` and zero-padded channels), global
average pooling, a classifier; ``kaiming_normal_`` on conv and linear weights, BN weight 1 bias 0.
Depth = 6n + 2 with n blocks per stage (ResNet-32: n = 5, 464,154 parameters for 10 classes).

Differences from that code: an adaptive average pool (any input of at least 8x8, e.g. 28x28
MNIST), a configurable number of input channels, and identity :class:`ModulationSite` modules:
after every BatchNorm of a residual block ("layer1.0.bn1", "layer1.0.bn2", ...), after every
stage ("stage1".."stage3") and on the pooled feature ("penultimate").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init

from .registry import register_model
from .sites import ModulationFn, ModulationSite, list_sites, set_modulation

__all__ = ["BasicBlock", "CifarResNet", "NormedLinear", "ShortcutA"]


class ShortcutA(nn.Module):
    """Option-A shortcut: subsample space by ``stride`` and zero-pad channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"option-A shortcut cannot shrink channels ({in_planes} -> {planes})")
        self.stride = stride
        self.pad_lo = (planes - in_planes) // 2
        self.pad_hi = planes - in_planes - self.pad_lo

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_lo, self.pad_hi))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_lo}, {self.pad_hi})"


class NormedLinear(nn.Module):
    """Cosine classifier of Cao et al. (LDAM-DRW): ``normalize(x) @ normalize(W, dim=0)``.

    ``weight`` has shape (in_features, out_features) as in their code; outputs lie in [-1, 1].
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1).mm(F.normalize(self.weight, dim=0))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class BasicBlock(nn.Module):
    """conv3x3-BN-[site]-ReLU-conv3x3-BN-[site], + shortcut, ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int, name: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.site1 = ModulationSite(f"{name}.bn1", "bn", planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.site2 = ModulationSite(f"{name}.bn2", "bn", planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = ShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.site1(self.bn1(self.conv1(x))))
        out = self.site2(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet with ``blocks`` BasicBlocks per stage and stage widths ``widths``."""

    # The parameter groups other code selects by (mfm.models.registry.declared_params): the
    # classifier, and the last residual stage (mfm.virtual_params=fc | last_stage).
    classifier_params: ClassVar[tuple[str, ...]] = ("classifier",)
    last_stage_params: ClassVar[tuple[str, ...]] = ("layer3",)

    # Registered with setattr in __init__; declared here for the type checker.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    site_stage1: ModulationSite
    site_stage2: ModulationSite
    site_stage3: ModulationSite

    def __init__(self, blocks: int, widths: Sequence[int] = (16, 32, 64), *, num_classes: int,
                 in_channels: int = 3, classifier: str = "linear"):
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks per stage must be >= 1 (got {blocks})")
        if len(widths) != 3:
            raise ValueError(f"need 3 stage widths (got {tuple(widths)})")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (got {num_classes})")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1 (got {in_channels})")
        if classifier not in ("linear", "cosine"):
            raise ValueError(f"classifier must be linear | cosine (got {classifier!r})")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.classifier_kind = classifier
        self.feature_dim = widths[-1]

        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        # Registration order == forward order, so sites() lists the sites in forward order.
        in_planes = widths[0]
        for i, (w, stride) in enumerate(zip(widths, (1, 2, 2)), start=1):
            layer = []
            for b in range(blocks):
                layer.append(BasicBlock(in_planes, w, stride if b == 0 else 1, f"layer{i}.{b}"))
                in_planes = w
            setattr(self, f"layer{i}", nn.Sequential(*layer))
            setattr(self, f"site_stage{i}", ModulationSite(f"stage{i}", "stage", w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.site_penultimate = ModulationSite("penultimate", "penultimate", self.feature_dim)
        self.classifier: nn.Module = (nn.Linear(self.feature_dim, num_classes)
                                      if classifier == "linear"
                                      else NormedLinear(self.feature_dim, num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                init.ones_(m.weight)
                init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate feature (N, feature_dim), after its modulation site."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.site_stage1(self.layer1(out))
        out = self.site_stage2(self.layer2(out))
        out = self.site_stage3(self.layer3(out))
        feat: torch.Tensor = self.site_penultimate(torch.flatten(self.pool(out), 1))
        return feat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.forward_features(x))
        return logits

    def set_modulation(self, fn: ModulationFn | None) -> None:
        """Set ``fn(site, x) -> x'`` on every site (``None`` restores the identity)."""
        set_modulation(self, fn)

    def sites(self) -> dict[str, tuple[str, int]]:
        """Site name -> (kind, channels), in forward order."""
        return list_sites(self)


def _factory(blocks: int, widths: Sequence[int] = (16, 32, 64)) -> Callable[..., CifarResNet]:
    def make(*, num_classes: int, in_channels: int = 3, classifier: str = "linear") -> CifarResNet:
        return CifarResNet(blocks, widths, num_classes=num_classes, in_channels=in_channels,
                           classifier=classifier)
    return make


for _depth in (8, 20, 32, 44, 56):
    register_model(f"resnet{_depth}")(_factory((_depth - 2) // 6))
register_model("resnet_tiny")(_factory(1, (4, 8, 16)))
del _depth
