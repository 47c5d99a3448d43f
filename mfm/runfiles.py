"""The files of a run's folder, named once: the engine writes them, the runner, the store's
queue and the front ends look for them. Torch-free and dependency-free, so every layer may
import it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["LAST", "BEST", "LOG", "last_checkpoint", "has_checkpoint", "log_path"]

#: the checkpoint a resume continues from: the last completed epoch, with everything that
#: trains (weights, optimiser, schedule, modulation, random state) and that epoch's results
LAST = "last.pt"
#: the weights of the best epoch so far (by validation accuracy when the run has a
#: validation split, else by test accuracy)
BEST = "best.pt"
#: what a background run's process writes (stdout and stderr)
LOG = "run.log"


def last_checkpoint(checkpoint_dir: str | Path) -> Path:
    """``checkpoint_dir/last.pt``."""
    return Path(checkpoint_dir) / LAST


def has_checkpoint(checkpoint_dir: str | Path | None) -> bool:
    """Is there a ``last.pt`` to resume from in ``checkpoint_dir``?"""
    return checkpoint_dir is not None and last_checkpoint(checkpoint_dir).is_file()


def log_path(runs_root: Path, run_id: int, recorded: str | None) -> Path:
    """A run's log: the path its record holds, else ``runs_root/ID/run.log``."""
    return Path(recorded) if recorded else runs_root / str(run_id) / LOG
