"""Device resolution and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch

from mfm.config import ConfigError

__all__ = ["resolve_device", "seed_everything"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("device", f"{name!r} asked for, but no CUDA device is available here; "
                                    "use auto or cpu")
    dev = torch.device(name)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError("device", f"{name!r} does not exist: this machine has "
                                    f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


def seed_everything(seed: int, device: torch.device) -> None:
    """Seed python, numpy and torch. CPU runs are deterministic; on CUDA cuDNN autotuning
    stays on for speed (bit-exact GPU runs are not promised)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
