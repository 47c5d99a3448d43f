"""The last line of defence of an entry point (``mfm``, ``mfm-tui``): an exception nobody
expected ends the program with one line and the path of a log holding the traceback, never a
bare traceback. ``MFM_DEBUG=1`` prints the traceback inline as well.

Faults a user can act on have their own one-line messages before they reach this point
(``UserError``, ``StoreError``); a full disk is named as such wherever it surfaces.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from mfm.text import one_line

__all__ = ["log_dir", "write_crash_log", "describe_os_error", "guard", "debug_enabled"]


def debug_enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get("MFM_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def log_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``MFM_LOG_DIR``, else ``$XDG_STATE_HOME/mfm``, else ``~/.local/state/mfm``."""
    if env.get("MFM_LOG_DIR"):
        return Path(env["MFM_LOG_DIR"])
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "mfm"


def write_crash_log(prog: str, text: str, env: Mapping[str, str] = os.environ) -> Path | None:
    """Write ``text`` to a new log file; the log folder, else the system's temporary folder.
    None if neither can be written (a full disk)."""
    name = f"{prog}-crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (log_dir(env), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def describe_os_error(e: OSError) -> str:
    """One line for an OSError, naming the file: "No space left on device: /runs/3/last.pt"."""
    if e.errno == errno.ENOSPC:
        what = "No space left on device"
    elif e.errno:
        what = e.strerror or os.strerror(e.errno)
    else:
        what = str(e)
    where = e.filename
    return one_line(f"{what}: {where}" if where else what)


def guard(prog: str, body: Callable[[], Any], *, err: IO[str] | None = None,
          env: Mapping[str, str] = os.environ) -> Any:
    """Run ``body``; an unexpected exception becomes one line on stderr and exit code 1."""
    stream = err if err is not None else sys.stderr
    try:
        return body()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 — the point of this function
        from mfm.store import StoreError  # no torch; sqlalchemy only

        if isinstance(e, StoreError):
            print(f"error: {one_line(e)}", file=stream)
            raise SystemExit(1) from None
        tb = traceback.format_exc()
        if isinstance(e, OSError):
            head = describe_os_error(e)
        else:
            head = one_line(f"{type(e).__name__}: {e}", limit=200)
        if debug_enabled(env):
            print(tb, file=stream, end="")
            print(f"error: {head}", file=stream)
            raise SystemExit(1) from None
        path = write_crash_log(prog, tb, env)
        where = f"traceback in {path}" if path else "the traceback could not be written"
        print(f"error: {head} ({where}; MFM_DEBUG=1 shows it here)", file=stream)
        raise SystemExit(1) from None
