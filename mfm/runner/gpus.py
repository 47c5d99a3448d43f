"""GPU discovery without importing torch: NVML (nvidia-ml-py), else nvidia-smi, else none."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

__all__ = ["GpuInfo", "discover_gpus", "gpu_utilisation"]


@dataclass(frozen=True)
class GpuInfo:
    index: int  # PCI bus order (CUDA_DEVICE_ORDER=PCI_BUS_ID)
    name: str
    memory_mib: int


def _nvml() -> object | None:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 — no driver, no GPU
        return None
    module: object = pynvml
    return module


def discover_gpus() -> list[GpuInfo]:
    nv = _nvml()
    if nv is not None:
        out = []
        for i in range(nv.nvmlDeviceGetCount()):  # type: ignore[attr-defined]
            h = nv.nvmlDeviceGetHandleByIndex(i)  # type: ignore[attr-defined]
            name = nv.nvmlDeviceGetName(h)  # type: ignore[attr-defined]
            mem = nv.nvmlDeviceGetMemoryInfo(h).total // 2**20  # type: ignore[attr-defined]
            out.append(GpuInfo(i, name.decode() if isinstance(name, bytes) else name, int(mem)))
        return out
    if shutil.which("nvidia-smi"):
        try:
            text = subprocess.run(
                ["nvidia-smi", "--query-gpu=index,name,memory.total",
                 "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10,
                check=True).stdout
        except (subprocess.SubprocessError, OSError):
            return []
        out = []
        for line in text.strip().splitlines():
            idx, name, mem = (p.strip() for p in line.split(","))
            out.append(GpuInfo(int(idx), name, int(float(mem))))
        return out
    return []


def gpu_utilisation() -> list[dict[str, float]]:
    """Per GPU: utilisation % and memory used/total MiB (NVML only; [] without it)."""
    nv = _nvml()
    if nv is None:
        return []
    out = []
    for i in range(nv.nvmlDeviceGetCount()):  # type: ignore[attr-defined]
        h = nv.nvmlDeviceGetHandleByIndex(i)  # type: ignore[attr-defined]
        util = nv.nvmlDeviceGetUtilizationRates(h)  # type: ignore[attr-defined]
        mem = nv.nvmlDeviceGetMemoryInfo(h)  # type: ignore[attr-defined]
        out.append({"index": i, "util": float(util.gpu), "mem_used": mem.used / 2**20,
                    "mem_total": mem.total / 2**20})
    return out
