"""A file that reads as a checkpoint to mfm.runfiles' torch-free check (a zip archive holding
one plain pickle), for tests of the rules around resuming that never load it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path


def write_checkpoint(path: Path, state: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(state or {"epoch": 0}, protocol=2))
    return path
