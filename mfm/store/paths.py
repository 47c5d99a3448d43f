"""Where the records and the runs' files live, worked out from a database target alone.

Pure functions over strings, paths and an environment passed in: no SQLAlchemy, torch or
click, and no module-level settings, so the CLI, the runner and the TUI share one rule each:
what a ``sqlite:///`` URL points at, where checkpoints and logs go, and whether a file can hold
the records at all (checked before anything opens or creates it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from mfm.text import visible

__all__ = ["SQLITE_URL_PREFIX", "SQLITE_HEADER", "RUNS_DIR_ENV", "sqlite_path", "sqlite_file",
           "sqlite_file_fault", "sqlite_file_problem", "runs_root", "resolve_db_target",
           "DEFAULT_DB", "DB_ENV", "DB_FILE_ENV"]

SQLITE_URL_PREFIX = "sqlite:///"
SQLITE_HEADER = b"SQLite format 3\x00"
RUNS_DIR_ENV = "MFM_RUNS_DIR"
DEFAULT_DB = "experiments.db"
DB_ENV = "MFM_DB"
#: a file holding the database's URL (a password kept out of the shell's history and of
#: ``ps``); it must be readable by its owner only
DB_FILE_ENV = "MFM_DB_FILE"


def resolve_db_target(cli_value: str | None, env: Mapping[str, str]) -> str:
    """The records to use: ``--db`` wins over ``MFM_DB``, which wins over the URL in the file
    ``MFM_DB_FILE`` names, which wins over ./experiments.db. A ``MFM_DB_FILE`` that others
    may read, or that cannot be read, is refused (StoreError, field "db")."""
    if cli_value:
        return cli_value
    if env.get(DB_ENV):
        return env[DB_ENV]
    if env.get(DB_FILE_ENV):
        return _target_from_file(Path(os.path.expanduser(env[DB_FILE_ENV])))
    return DEFAULT_DB


def _target_from_file(path: Path) -> str:
    from mfm.store.errors import StoreError

    shown = visible(str(path))
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise StoreError(f"{DB_FILE_ENV}: cannot read {shown} ({e.strerror or e})",
                         field=None) from None
    if mode & 0o077:
        raise StoreError(f"{DB_FILE_ENV}: {shown} can be read by others (mode "
                         f"{mode & 0o777:04o}); chmod 600 {shown}", field=None)
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise StoreError(f"{DB_FILE_ENV}: {shown} must hold one database URL (found "
                         f"{len(lines)} lines)", field=None)
    return lines[0]


def sqlite_path(target: str) -> str:
    """A target without its ``sqlite:///`` prefix: the file's path for a SQLite URL, the
    target unchanged otherwise (a plain path, or another backend's URL, still with ``://``)."""
    return target.removeprefix(SQLITE_URL_PREFIX)


def sqlite_file(target: str) -> tuple[Path, str] | None:
    """The SQLite file a target names (absolute) and how to name it in messages; None when it
    names none: another backend's URL, ``:memory:``, a ``file:`` URI."""
    if target == ":memory:":
        return None
    path_text = target
    if "://" in target:
        if not target.startswith(SQLITE_URL_PREFIX):
            return None
        path_text = sqlite_path(target).split("?", 1)[0]
        if path_text in ("", ":memory:") or path_text.startswith("file:"):
            return None
    shown = visible(target if "://" not in target else path_text)
    return Path(os.path.abspath(os.path.expanduser(path_text))), shown


def sqlite_file_fault(path: Path, shown: str) -> str | None:
    """Why ``path`` cannot hold the records, as one line naming it as ``shown`` (None if it
    can): a directory, a file that is not SQLite or cannot be read, a missing folder. Only
    reads: nothing is created or written. Neutral words: a front end adds its own prefix
    (the store raises it as a ``StoreError`` with ``field="db"``)."""
    if path.is_dir():
        return f"'{shown}' is a directory, not a SQLite database"
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            return f"cannot read '{shown}': {e.strerror}"
        if head and head != SQLITE_HEADER:
            return f"'{shown}' is not a SQLite database"
        return None
    if not path.parent.is_dir():
        return f"directory '{visible(path.parent)}' does not exist (for '{shown}')"
    return None


def sqlite_file_problem(path: Path, shown: str) -> str | None:
    """:func:`sqlite_file_fault` worded for a ``--db`` option ("--db: ..."), as mfm-tui's
    ``check_target`` shows it before its first frame (mfm-tui takes ``--db`` too)."""
    fault = sqlite_file_fault(path, shown)
    return None if fault is None else f"--db: {fault}"


def runs_root(db_target: str, env: Mapping[str, str]) -> Path:
    """Checkpoints and logs go in ``runs/`` beside a SQLite file, else in ./runs
    (``MFM_RUNS_DIR`` in ``env`` overrides both)."""
    if env.get(RUNS_DIR_ENV):
        return Path(env[RUNS_DIR_ENV]).resolve()
    target = sqlite_path(db_target)
    if "://" in target:
        return Path("runs").resolve()
    return Path(target).resolve().parent / "runs"
