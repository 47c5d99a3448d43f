"""The store's errors: one line each, neutral words, and fields a front end renders.

A store error says what is wrong with the records or a request; it does not know which
front end will show it. ``message`` is the line without any prefix (``str(e)`` is the same),
and ``field`` names what the user gave that the error is about, in neutral words:

- ``"db"``: the database target (the CLI's ``--db``, the TUI's ``--db`` / ``MFM_DB``);
- ``"run"``: a run id the user named (the CLI's ``ID`` argument);
- ``None``: nothing in particular.

The CLI renders them with :func:`mfm.cli.errors.cli_message` ("--db: ...", "ID: ..."); the
TUI shows the message as it is.

Two families that a caller tells apart by ``except``, as before:

- :class:`StoreError`: the records cannot be read or written as asked (damaged, busy,
  unreachable, a schema of another mfm, no such record). A supervisor waits these out.
- :class:`QueueError` (a ``ValueError``): a request the queue refuses (wrong state).

:class:`NoSuchRun` is both: an unknown run id is a missing record to the repository's
callers and a refused request to the queue's. Typed subclasses carry what a front end may
need beyond the words (the run id, the schema revisions).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Field", "RecordsError", "StoreError", "DamagedStore", "QueueError", "NoSuchRun",
           "RunStateError",
           "SchemaMismatch", "NewerSchema", "OlderSchema", "one_line_message"]

Field = str | None
"""``"db"``, ``"run"`` or None (see the module's docstring)."""


def one_line_message(message: object) -> str:
    """``message`` as one line: its non-blank lines, stripped, joined by spaces."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return " ".join(lines)


def _rebuild(cls: type[RecordsError], state: dict[str, Any]) -> RecordsError:
    error = cls.__new__(cls)
    error.__dict__.update(state)
    error.args = (state.get("message", ""),)
    return error


class RecordsError(Exception):
    """The base of the store's errors: ``message`` (one line, no prefix) and ``field``."""

    message: str
    field: Field

    def __init__(self, message: object, *, field: Field = None):
        self.message = one_line_message(message)
        self.field = field
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take other arguments: pickle (multiprocessing) by state, not by args.
        return (_rebuild, (type(self), dict(self.__dict__)))


class StoreError(RecordsError):
    """A problem with the records a user can act on; its message is always one line."""


class DamagedStore(StoreError):
    """The records' file is damaged or is not mfm records (field "db"): the user must point
    at another file or restore it, whichever page the damage was found on."""

    def __init__(self, message: object):
        super().__init__(message, field="db")


class QueueError(RecordsError, ValueError):
    """A request the queue cannot take (unknown id, wrong state); one line."""


class NoSuchRun(QueueError, StoreError):
    """No run has this id (``field`` "run": the id the user named)."""

    def __init__(self, run_id: int, message: str | None = None):
        super().__init__(message or f"no run {run_id}", field="run")
        self.run_id = run_id


class RunStateError(QueueError):
    """The run is in a state that refuses the request (``status``: the state it is in)."""

    def __init__(self, run_id: int, status: str, message: str):
        super().__init__(message, field="run")
        self.run_id = run_id
        self.status = status


class SchemaMismatch(StoreError):
    """The database's schema is not the one this mfm uses. ``found``: its revision (or
    "schema version N" for a file from before Alembic); ``needed``: this mfm's head
    revision; ``mfm_version``: this mfm's version."""

    def __init__(self, message: str, *, found: str, needed: str, mfm_version: str):
        super().__init__(message, field="db")
        self.found = found
        self.needed = needed
        self.mfm_version = mfm_version


class NewerSchema(SchemaMismatch):
    """A newer mfm upgraded the database: upgrade mfm on this host."""


class OlderSchema(SchemaMismatch):
    """A shared database behind this mfm: ``mfm db upgrade`` once every host is ready.
    ``found_mfm`` / ``needed_mfm``: the mfm versions that introduced the two revisions (None
    when not known)."""

    def __init__(self, message: str, *, found: str, needed: str, mfm_version: str,
                 found_mfm: str | None, needed_mfm: str | None):
        super().__init__(message, found=found, needed=needed, mfm_version=mfm_version)
        self.found_mfm = found_mfm
        self.needed_mfm = needed_mfm
