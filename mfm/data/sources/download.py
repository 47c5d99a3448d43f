"""Fetching missing files with torchvision's downloaders (MNIST, Fashion-MNIST, CIFAR), and
the one-line error that says what was looked for where when they are still missing.

torchvision is imported only inside :func:`torchvision_download`, never at import time.
"""

from __future__ import annotations

import socket
from pathlib import Path

from mfm.config import ConfigError
from mfm.data.sources.base import one_line

__all__ = ["DOWNLOAD_TIMEOUT_S", "missing", "torchvision_download"]

DOWNLOAD_TIMEOUT_S = 30.0


def torchvision_download(name: str, target: Path) -> str | None:
    """Download ``name`` with torchvision into ``target``; None on success, else why not."""
    old_timeout = socket.getdefaulttimeout()
    try:
        import torchvision.datasets as tvd

        cls = {"mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST,
               "cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}[name]
        target.mkdir(parents=True, exist_ok=True)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        for train in (True, False):
            cls(str(target), train=train, download=True)
        return None
    except BaseException as e:  # noqa: BLE001 - any failure becomes one clear ConfigError
        if isinstance(e, KeyboardInterrupt):
            raise
        return one_line(e)
    finally:
        socket.setdefaulttimeout(old_timeout)


def missing(name: str, what: str, where: list[Path], why: str | None, how: str) -> ConfigError:
    """The error for files that are not there (after a download, when one was tried)."""
    places = " or ".join(str(p) for p in where)
    tried = f"; torchvision download failed ({why})" if why else "; download not attempted"
    return ConfigError("data.root", f"{name}: no {what} in {places}{tried}; {how}")
