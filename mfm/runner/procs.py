"""Processes identified by (pid, start time), so a reused pid never passes for a run."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

__all__ = ["process_start_time", "is_alive", "signal_group", "boot_id", "host_name",
           "HOSTNAME_ENV"]

#: overrides the host name this process serves and records (tests stand in for several hosts)
HOSTNAME_ENV = "MFM_HOSTNAME"


def host_name() -> str:
    """The name of this host in the records: ``MFM_HOSTNAME`` if set, else the system's host
    name. The one home of that rule (supervisor, run process, queueing, locks, the CLI)."""
    return os.environ.get(HOSTNAME_ENV, "").strip() or socket.gethostname()


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot, with the boot id), or
    None if there is no such process. Two processes with one pid never share it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    state, start = fields[0], fields[19]
    if state in ("Z", "X"):  # a zombie has finished; only its exit status is left
        return None
    return f"{boot_id()}:{start}"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "noboot"


def is_alive(pid: int | None, start_time: str | None) -> bool:
    """True when ``pid`` runs and is the same process that was recorded."""
    if not pid:
        return False
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def signal_group(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to the process group led by ``pid`` (a run is a session leader).
    False when it is already gone."""
    try:
        os.killpg(pid, sig)
        return True
    except ProcessLookupError:
        pass  # not a group leader (a foreground --headless run): signal the process itself
    except PermissionError:
        return False
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
