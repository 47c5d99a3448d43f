"""Driver errors turned into one-line ``StoreError``s: what is wrong with which database, and
what to do about it.

Pure functions of the error's text and of what :class:`~mfm.store.db.Database` knows about
its target (passed in as a :class:`Target`); the file system is asked only whether a file or
folder can be written. The messages name the database (a file, or a URL without its
password) and leave the front end's prefix out: ``field="db"`` says they are about the
database target (the CLI shows "--db: ...")."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mfm.store.errors import DamagedStore, StoreError
from mfm.text import visible

__all__ = ["Target", "hide_password", "on_read_only_fs", "writable", "database_error"]

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def hide_password(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ***."""
    return _PASSWORD_IN_URL.sub(r"\1***@", text)


def on_read_only_fs(folder: Path) -> bool:
    """Is ``folder`` on a file system mounted read-only (a snapshot, a ``ro`` mount)?"""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        return False


def writable(path: Path) -> bool:
    # access() also says no for a read-only file system and an immutable (chattr +i) inode,
    # even to root, who passes every permission bit.
    return os.access(path, os.W_OK)


@dataclass(frozen=True)
class Target:
    """What the messages need to know about the database."""

    display: str                 # the file, or the URL without its password
    path: Path | None            # the SQLite file (None: another backend, memory)
    is_sqlite: bool
    read_only_media: bool        # opened immutable on a read-only file system
    busy_timeout_ms: int
    username: str | None         # the URL's user (PostgreSQL)
    password: str | None         # hidden from every message

    def hide(self, text: str) -> str:
        """``text`` without this database's password (nor any URL's)."""
        if self.password:
            text = text.replace(self.password, "***")
        return hide_password(text)


def database_error(target: Target, e: BaseException) -> StoreError:
    """One line for a database error: what is wrong with which database, and what to do."""
    orig = getattr(e, "orig", None) or e
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if not target.is_sqlite:
        return _pg_error(target, str(orig), first)
    return _sqlite_error(target, first)


def _sqlite_error(target: Target, first: str) -> StoreError:
    said, shown = first.lower(), target.display
    message: str | None = None
    if "not a database" in said or "malformed" in said:
        return DamagedStore(f"'{shown}' is damaged ({first}); restore it from a backup or "
                            "point --db at another file")
    elif "database is locked" in said:
        seconds = f"{target.busy_timeout_ms / 1000:g}"
        where = str(target.path) if target.path is not None else shown
        message = (f"'{shown}' is busy: another process has held its write lock for longer "
                   f"than {seconds} s; retry later, or find that process with `fuser {where}`")
    elif target.path is not None and ("readonly" in said or "read-only" in said):
        message = _read_only_message(target, target.path, first)
    elif target.path is not None and "unable to open" in said:
        message = _cannot_open_message(target, target.path, first)
    elif target.path is not None and "disk i/o error" in said:
        message = (f"cannot read or write '{shown}' ({first}); check the disk, and that the "
                   "file and its folder are writable")
    elif "disk is full" in said:
        message = f"no space left for '{shown}' ({first}); free some space and retry"
    if message is None:
        return StoreError(f"database error in {shown}: {first}")
    return StoreError(message, field="db")


def _pg_error(target: Target, said_all: str, first: str) -> StoreError:
    """PostgreSQL's (and psycopg's) messages, mapped to what to do."""
    message = _pg_message(target, said_all, first)
    if message is None:
        fatal = re.search(r"fatal:\s*(.*)", said_all, re.IGNORECASE)
        reason = visible((fatal.group(1) if fatal else first).strip(), 160)
        return StoreError(target.hide(f"database error in {target.display}: {reason}"))
    return StoreError(target.hide(message), field="db")


def _pg_message(target: Target, said_all: str, first: str) -> str | None:
    shown, said, user = target.display, said_all.lower(), target.username
    if "password authentication failed" in said:
        return (f"{shown}: password authentication failed for user {user!r}; check the "
                "password (in the URL, PGPASSWORD or ~/.pgpass)")
    if "no password supplied" in said or "fe_sendauth" in said:
        return (f"{shown}: the server asks user {user!r} for a password and none was given "
                "(put it in the URL, PGPASSWORD or ~/.pgpass)")
    missing = re.search(r'database "([^"]*)" does not exist', said_all)
    if missing:
        return (f"{shown}: database {missing.group(1)!r} does not exist on that server; "
                f"create it (createdb {missing.group(1)}) or fix the URL")
    role = re.search(r'role "([^"]*)" does not exist', said_all)
    if role:
        return (f"{shown}: role {role.group(1)!r} does not exist on that server; create it "
                f"(createuser {role.group(1)}) or fix the user in the URL")
    if any(s in said for s in ("connection failed", "could not connect", "connection refused",
                               "could not translate host", "timeout expired",
                               "is the server running", "failed to resolve host")):
        where = re.search(r"(?:connection failed|port \d+ failed|socket .* failed): (.*)",
                          first)
        detail = visible((where.group(1) if where else first).strip(), 160)
        return (f"cannot reach the PostgreSQL server of {shown} ({detail}); check the host "
                "and port, and that the server is running")
    return None


def _read_only_message(target: Target, path: Path, first: str) -> str:
    shown, folder = target.display, path.parent
    if target.read_only_media or on_read_only_fs(folder):
        return (f"'{shown}' is on a read-only file system, so it can only be read ({first}); "
                "copy it to a writable folder and point --db at the copy")
    if path.exists() and not writable(path):
        owner = _other_owner(path)
        if owner is not None:
            return (f"'{shown}' belongs to {owner} and can only be read by you ({first}); ask "
                    f"{owner} for write access, or copy it and point --db at the copy")
        return (f"'{shown}' is read-only ({first}); make it writable (chmod u+w), or copy it "
                "and point --db at the copy")
    if not writable(folder):
        owner = _other_owner(folder)
        if owner is not None:
            return (f"the folder of '{shown}' belongs to {owner} and you cannot write in it, "
                    f"so the records can only be read ({first}); copy the database to a "
                    "folder of yours and point --db at the copy")
        return read_only_folder_message(target.display, path, first)
    return (f"'{shown}' cannot be written ({first}); check that it and its folder are "
            "writable")


def _other_owner(path: Path) -> str | None:
    """The user owning ``path`` when it is not this process's user (a chmod of ours cannot
    help then), else None."""
    try:
        uid = path.stat().st_uid
    except OSError:
        return None
    if uid == os.getuid():
        return None
    try:
        import pwd

        return f"user {pwd.getpwuid(uid).pw_name}"
    except (KeyError, ImportError):
        return f"user id {uid}"


def read_only_folder_message(shown: str, path: Path, first: str) -> str:
    name = path.name
    return (f"the folder of '{shown}' is read-only, and SQLite needs to create {name}-wal and "
            f"{name}-shm beside it ({first}); make the folder writable, or copy the database "
            "to a writable folder and point --db at the copy")


def _cannot_open_message(target: Target, path: Path, first: str) -> str:
    shown, folder = target.display, path.parent
    if not path.exists():
        if not writable(folder):
            return (f"cannot create '{shown}': its folder is read-only ({first}); make the "
                    "folder writable or point --db at another folder")
    elif not os.access(path, os.R_OK):
        return (f"cannot read '{shown}' ({first}); make it readable (chmod u+r) or point --db "
                "at another file")
    elif not writable(folder):
        return read_only_folder_message(shown, path, first)
    return (f"cannot open '{shown}' ({first}); check that it and its folder are readable and "
            "writable")
