"""Checkpoints read with weights_only=True, and the RNG state they carry. They are written with
:func:`mfm.atomic.save_atomic` (temp file + fsync + rename)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["load_checkpoint", "capture_rng", "restore_rng", "CheckpointDamaged"]


class CheckpointDamaged(ValueError):
    """A checkpoint that cannot be loaded safely: ``path`` and ``why`` (truncated, empty, not
    a checkpoint, it would run code...). One line; never torch's own advice to load it with
    fewer checks."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = path, why
        super().__init__(f"{path} is damaged ({why}); restore it or start a new run")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's state, read with ``weights_only=True`` after mfm.runfiles'
    torch-free check; :class:`CheckpointDamaged` for anything that does not load."""
    from mfm.runfiles import checkpoint_problem

    why = checkpoint_problem(path)
    if why is not None and why != "missing":
        raise CheckpointDamaged(path, why)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 — torch's unpickling errors have many types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "weights_only" in first or "WeightsUnpickler" in first:
            first = "it would run code when loaded"
        raise CheckpointDamaged(path, first[:200]) from None
    if not isinstance(state, dict):
        raise CheckpointDamaged(path, f"it holds a {type(state).__name__}, not a checkpoint")
    return state


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch RNG states as weights_only-loadable values."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)  # legacy=True is the default
    assert isinstance(np_state, tuple)  # a dict only for a non-MT19937 bit generator
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np_state
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_kind, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos),
                  int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    # is_initialized: torch leaves it unannotated.
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, g = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, g))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
