"""What the CLI writes for a user: ``-o FILE`` targets and CSV cells, each rule once.

``-o``: a regular file (or a new one) is replaced whole, atomically (a failed write leaves the
old file); a device, a FIFO or ``-`` is written through (never renamed over: ``/dev/full``
stays a device, a FIFO's reader gets the text); a symbolic link is followed on purpose (its
target is written by these same rules, the link stays); a folder, a dangling link or a missing
parent folder is refused in one line naming the option.

CSV: every cell that a spreadsheet would read as a formula (text starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return; OWASP's "CSV injection" rule) is prefixed with a
single quote; numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
import os
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from mfm.cli.errors import UserError
from mfm.text import visible

__all__ = ["write_output", "safe_cell", "csv_text"]

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """``value`` as a CSV cell no spreadsheet runs: text that starts like a formula gets a
    leading ``'``; numbers (``-0.5`` included) and other values pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def csv_text(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document with every cell made safe."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([safe_cell(v) for v in header])
    for row in rows:
        w.writerow([safe_cell(v) for v in row])
    return buf.getvalue()


def _os_error(option: str, e: OSError) -> UserError:
    from mfm.crashlog import describe_os_error

    return UserError(f"{option}: {describe_os_error(e)}")


def write_output(target: str, text: str, *, option: str = "--output") -> str:
    """Write ``text`` to ``target`` by the rules above; returns one line saying what was
    done (for stderr), "" for stdout."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return ""
    path = Path(target)
    shown = visible(str(path))
    via = ""
    if path.is_symlink():
        real = Path(os.path.realpath(path))
        if not real.exists() and not real.parent.is_dir():
            raise UserError(f"{option}: {shown} is a link to {visible(str(real))}, whose "
                            "folder does not exist")
        via, path = f" (through the link {shown})", real
        shown = visible(str(path))
    try:
        mode = path.stat().st_mode if path.exists() else None
    except OSError as e:
        raise _os_error(option, e) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UserError(f"{option}: {shown} is a directory; give a file path")
    if mode is not None and not stat.S_ISREG(mode):  # a device, a FIFO, a socket: write through
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:  # a write error of a device names no file: name it
            raise _os_error(option, e if e.filename else OSError(e.errno, e.strerror, str(path))
                            ) from None
        return f"wrote {len(text.encode())} bytes to {shown}{via}"
    if not path.parent.is_dir():
        raise UserError(f"{option}: folder {visible(str(path.parent))} does not exist")
    from mfm.atomic import write_atomic

    try:
        write_atomic(text.encode("utf-8"), path)
        if mode is not None:
            os.chmod(path, stat.S_IMODE(mode))  # a replaced file keeps its permissions
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(path, 0o666 & ~umask)
    except OSError as e:
        raise _os_error(option, e) from None
    return f"wrote {shown}{via}"
