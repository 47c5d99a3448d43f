"""One-line user errors with exit code 2, and how the store's errors read on the command
line."""

from __future__ import annotations

from typing import IO, Any

import click

from mfm.store.errors import RecordsError
from mfm.text import one_line

# Wide enough for the list of valid config keys; a pasted 10,000-element list is cut.
MESSAGE_LIMIT = 2000

# The command line's name for what a store error is about (mfm.store.errors' fields).
FIELD_PREFIX = {"db": "--db: ", "run": "ID: "}

__all__ = ["UserError", "cli_message", "store_error"]


class UserError(click.ClickException):
    """Bad input: printed as one line ``error: ...`` on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {one_line(self.format_message(), limit=MESSAGE_LIMIT)}", err=True,
                   file=file)


def cli_message(e: BaseException) -> str:
    """A store error (``StoreError``, ``QueueError`` and their kinds) as the command line says
    it: prefixed with the option or argument it is about ("--db: ...", "ID: ..."). Any other
    exception: its text."""
    if isinstance(e, RecordsError):
        return FIELD_PREFIX.get(e.field or "", "") + e.message
    return str(e)


def store_error(e: BaseException) -> UserError:
    """``raise store_error(e) from None`` in an ``except StoreError`` (or ``QueueError``)."""
    return UserError(cli_message(e))
