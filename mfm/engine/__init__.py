"""The training engine: fit / train_one_epoch / evaluate, metrics, checkpoints.

Knows nothing of SQLite, click or Textual: it takes a config, prepared data and callbacks.
Names load on first use, so that ``mfm.engine.callbacks`` (torch-free: what progress bars and
record sinks implement) can be imported without loading torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Callbacks", "CheckpointMissing", "Diverged", "EpochResult", "FitResult", "Recorder",
           "RunStopped", "StartInfo", "Tee", "evaluate", "fit", "resolve_device",
           "seed_everything", "train_one_epoch"]

_HOME = {
    "Callbacks": "callbacks", "EpochResult": "callbacks", "Recorder": "callbacks",
    "StartInfo": "callbacks", "Tee": "callbacks",
    "resolve_device": "device", "seed_everything": "device",
    "Diverged": "divergence",
    "CheckpointMissing": "training", "FitResult": "training", "RunStopped": "training",
    "evaluate": "training",
    "fit": "training", "train_one_epoch": "training",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'mfm.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mfm.engine.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
