"""One supervisor per database per host: an OS file lock (flock) that dies with its holder."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from mfm.runner.procs import host_name
from mfm.store.paths import sqlite_path

__all__ = ["SupervisorLock", "lock_path_for"]


def lock_path_for(db_target: str, runs_root: Path, host: str | None = None) -> Path:
    """``<db file>.<host>.worker.lock`` beside a SQLite file; for other URLs a file in the runs
    folder named by a hash of the URL. The host is in the name: on a shared filesystem each
    host serves its own GPUs."""
    host = host or host_name()
    target = sqlite_path(db_target)
    if "://" not in target:
        p = Path(target).resolve()
        return p.with_name(f"{p.name}.{host}.worker.lock")
    digest = hashlib.sha256(db_target.encode()).hexdigest()[:12]
    return runs_root / f".worker-{digest}.{host}.lock"


class SupervisorLock:
    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self, info: dict[str, Any]) -> bool:
        """Take the lock without waiting; on success record ``info`` (pid, ...) in the file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({**info, "locked_at": time.time()}).encode())
        os.fsync(fd)
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock now (the info its holder wrote), or None if nobody does."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder: dict[str, Any] = json.loads(self.path.read_text() or "{}")
                    return holder
                except (OSError, ValueError):
                    return {"pid": None}
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)
