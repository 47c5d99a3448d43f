"""Starting a detached supervisor, and finding the one that serves a database on this host."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mfm.runner.lock import SupervisorLock, lock_path_for
from mfm.runner.procs import host_name

__all__ = ["supervisor_lock", "serving", "start_detached_supervisor", "code_version",
           "SlotWishError", "check_slot_wish", "serving_slots", "default_slot_names",
           "split_pin", "check_host_wish"]

SLOT_NAME = re.compile(r"^(cpu|gpu)\d+(\.\d+)?$")
#: the slots of ``mfm worker --executor slurm`` are slurm.0, slurm.1, ...: a run that asks for
#: "slurm" goes to the cluster, and no local slot takes it
SLURM_SLOT = "slurm"
HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")


class SlotWishError(ValueError):
    """A slot preference no supervisor here can honour; one line naming the slots."""


def serving_slots(db: Any, db_target: str, runs_root: Path) -> list[str] | None:
    """The slot names of the supervisor serving this database on this host, or None."""
    if serving(db_target, runs_root) is None:
        return None
    from mfm.store import queue

    host = host_name()
    for w in queue.list_workers(db):
        if w.host == host and w.stopped_at is None:
            return [s["name"] for s in w.slots]
    return None


def default_slot_names() -> list[str]:
    """The slots a supervisor started with the defaults here would have: one per GPU found
    (NVML or nvidia-smi, no torch), or one CPU slot."""
    from mfm.runner.gpus import discover_gpus

    return [f"gpu{g.index}" for g in discover_gpus()] or ["cpu0"]


def check_slot_wish(wish: str, slots: list[str] | None, where: str = "this host") -> str:
    """``wish`` stripped, if a slot of ``slots`` can take it: the slot's name, or its GPU
    (``gpu1`` for ``gpu1.0``). ``slots`` are the serving supervisor's, or None when none
    serves yet: then the slots a supervisor started now would have (all GPUs found, one run
    each; one CPU slot without GPUs). '' (or 'any') means any slot."""
    wish = wish.strip()
    if wish in ("", "any"):
        return ""
    if wish == SLURM_SLOT:  # any host's Slurm worker takes it; it waits for one if none serves
        return wish
    if not SLOT_NAME.match(wish):
        raise SlotWishError(f"slot: must be 'any' or a slot name like gpu0, gpu1.0, cpu0 "
                            f"or slurm (got {wish!r})")
    if slots is None:
        slots = default_slot_names()
    if not any(s == wish or s.split(".")[0] == wish for s in slots):
        raise SlotWishError(f"slot: no slot {wish} on {where} (slots: {', '.join(slots)})")
    return wish


def split_pin(slot: str, host: str = "") -> tuple[str, str]:
    """(host, slot) from ``--host NAME`` and ``--slot [HOST:]SLOT``; ``HOST:`` and --host
    must agree."""
    slot, host = slot.strip(), host.strip()
    if ":" in slot:
        in_slot, slot = (p.strip() for p in slot.split(":", 1))
        if host and in_slot != host:
            raise SlotWishError(f"slot: names host {in_slot!r} but --host is {host!r}")
        host = in_slot
        if not host:
            raise SlotWishError("slot: expected HOST:SLOT like box2:gpu1 (the host is empty)")
    return host, slot


def check_host_wish(host: str, db: Any) -> tuple[str, list[str] | None]:
    """(host, its slots) for a run pinned to ``host``: '' (any host) and this host pass (slots
    None: the local rules apply); another host must have served this database (its
    supervisor's slots are in the workers table), so a typo is refused."""
    host = host.strip()
    if host in ("", "any") or host == host_name():
        return ("" if host == "any" else host), None
    if not HOST_NAME.match(host):
        raise SlotWishError(f"host: not a host name: {host!r}")
    from mfm.store import queue

    workers = {w.host: w for w in queue.list_workers(db)}
    if host not in workers:
        seen = ", ".join(sorted(workers)) or "none yet"
        raise SlotWishError(f"host: no supervisor has served this database on {host} "
                            f"(hosts seen: {seen}; start `mfm worker --detach` there first)")
    return host, [s["name"] for s in workers[host].slots]


def supervisor_lock(db_target: str, runs_root: Path) -> SupervisorLock:
    return SupervisorLock(lock_path_for(db_target, runs_root, host_name()))


def serving(db_target: str, runs_root: Path) -> dict[str, Any] | None:
    """The lock holder's info if a supervisor serves this database on this host."""
    return supervisor_lock(db_target, runs_root).holder()


#: the runner's entry point for a supervisor (``python -m``; see mfm.runner.serve)
SERVE_MODULE = "mfm.runner.serve"


def start_detached_supervisor(db_target: str, runs_root: Path, args: list[str]) -> int:
    """A supervisor serving with ``args`` (``SupervisorSpec.to_args()``: ``mfm worker``'s
    options) as a daemon: its own session, no terminal, output to
    runs/worker.log; survives the shell that started it. The database's URL goes through the
    environment (MFM_DB), so a password never shows in ``ps``. Returns its pid."""
    runs_root.mkdir(parents=True, exist_ok=True)
    log = open(runs_root / "worker.log", "ab")  # noqa: SIM115 — handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", SERVE_MODULE, *args],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True,
            env=dict(os.environ, MFM_DB=db_target, MFM_RUNS_DIR=str(runs_root),
                     PYTHONUNBUFFERED="1"))
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
