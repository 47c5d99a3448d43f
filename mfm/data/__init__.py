"""Long-tailed datasets: sources, the long-tail split, and device-resident loaders.

Importing ``mfm.data`` does not import torch: the torch-side names (build_data, LongTailData,
DeviceLoader, crop_batch) load ``mfm.data.loader`` on first access.
"""

from __future__ import annotations

from typing import Any

from mfm.data.longtail import Split, class_counts, make_split
from mfm.data.sources import Source, load_source, preview_counts

__all__ = ["DeviceLoader", "LongTailData", "Source", "Split", "build_data", "class_counts",
           "crop_batch", "load_source", "make_split", "preview_counts"]

_LAZY = ("DeviceLoader", "LongTailData", "build_data", "crop_batch")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from mfm.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'mfm.data' has no attribute {name!r}")
