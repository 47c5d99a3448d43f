"""Starting a detached supervisor, and finding the one that serves a database on this host."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mfm.runner.lock import SupervisorLock, lock_path_for

__all__ = ["supervisor_lock", "serving", "start_detached_supervisor", "code_version",
           "SlotWishError", "check_slot_wish", "serving_slots", "default_slot_names"]

SLOT_NAME = re.compile(r"^(cpu|gpu)\d+(\.\d+)?$")


class SlotWishError(ValueError):
    """A slot preference no supervisor here can honour; one line naming the slots."""


def serving_slots(db: Any, db_target: str, runs_root: Path) -> list[str] | None:
    """The slot names of the supervisor serving this database on this host, or None."""
    if serving(db_target, runs_root) is None:
        return None
    from mfm.store import queue

    host = socket.gethostname()
    for w in queue.list_workers(db):
        if w.host == host and w.stopped_at is None:
            return [s["name"] for s in w.slots]
    return None


def default_slot_names() -> list[str]:
    """The slots a supervisor started with the defaults here would have: one per GPU found
    (NVML or nvidia-smi, no torch), or one CPU slot."""
    from mfm.runner.gpus import discover_gpus

    return [f"gpu{g.index}" for g in discover_gpus()] or ["cpu0"]


def check_slot_wish(wish: str, slots: list[str] | None) -> str:
    """``wish`` stripped, if a slot of ``slots`` can take it: the slot's name, or its GPU
    (``gpu1`` for ``gpu1.0``). ``slots`` are the serving supervisor's, or None when none
    serves yet: then the slots a supervisor started now would have (all GPUs found, one run
    each; one CPU slot without GPUs). '' (or 'any') means any slot."""
    wish = wish.strip()
    if wish in ("", "any"):
        return ""
    if not SLOT_NAME.match(wish):
        raise SlotWishError(f"slot: must be 'any' or a slot name like gpu0, gpu1.0 or cpu0 "
                            f"(got {wish!r})")
    if slots is None:
        slots = default_slot_names()
    if not any(s == wish or s.split(".")[0] == wish for s in slots):
        raise SlotWishError(f"slot: no slot {wish} on this host (slots: {', '.join(slots)})")
    return wish


def supervisor_lock(db_target: str, runs_root: Path) -> SupervisorLock:
    return SupervisorLock(lock_path_for(db_target, runs_root, socket.gethostname()))


def serving(db_target: str, runs_root: Path) -> dict[str, Any] | None:
    """The lock holder's info if a supervisor serves this database on this host."""
    return supervisor_lock(db_target, runs_root).holder()


def start_detached_supervisor(db_target: str, runs_root: Path, args: list[str]) -> int:
    """``mfm worker ARGS`` as a daemon: its own session, no terminal, output to
    runs/worker.log; survives the shell that started it. Returns its pid."""
    runs_root.mkdir(parents=True, exist_ok=True)
    log = open(runs_root / "worker.log", "ab")  # noqa: SIM115 — handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mfm.cli.main", "--db", db_target, "worker", *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
            env=dict(os.environ, MFM_RUNS_DIR=str(runs_root), PYTHONUNBUFFERED="1"))
    finally:
        log.close()
    return proc.pid


def wait_until_serving(db_target: str, runs_root: Path, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if serving(db_target, runs_root):
            return True
        time.sleep(0.05)
    return False


def code_version() -> str:
    """The package version, plus the git commit when run from a checkout."""
    from mfm import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=5)
    except (OSError, subprocess.SubprocessError):
        return __version__
    if head.returncode != 0:
        return __version__
    return f"{__version__}+{head.stdout.strip()}{'.dirty' if dirty.stdout.strip() else ''}"
