"""Files written atomically (temp file + fsync + rename): a reader sees the old file or the new
one, never half. Torch-free at import: :func:`save_atomic` loads torch when it is called, so the
engine's checkpoints and a method's own files (MFM's modulator) share one writer without a
method importing the engine."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["save_atomic", "write_atomic", "write_json_atomic"]


def write_atomic(data: bytes | memoryview, path: Path) -> None:
    """Write ``data`` to ``path`` atomically.

    Plain ``os.write`` calls, so a full disk fails as an ``OSError`` (``ENOSPC``) naming the
    temporary file; the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            try:
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            if e.filename is None and e.errno:
                raise OSError(e.errno, e.strerror or os.strerror(e.errno), tmp) from e
            raise
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (serialised in memory first, so a full disk
    is ``No space left on device`` naming the temporary file, not torch's ``unexpected pos``)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(buf.getbuffer(), path)  # getbuffer: no copy


def write_json_atomic(obj: Any, path: Path) -> None:
    """``obj`` as indented JSON (strict: no NaN), written atomically."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    write_atomic(text.encode("utf-8"), path)
