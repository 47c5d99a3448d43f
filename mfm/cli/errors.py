"""One-line user errors with exit code 2."""

from __future__ import annotations

from typing import IO, Any

import click

from mfm.text import one_line

# Wide enough for the list of valid config keys; a pasted 10,000-element list is cut.
MESSAGE_LIMIT = 2000

__all__ = ["UserError"]


class UserError(click.ClickException):
    """Bad input: printed as one line ``error: ...`` on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {one_line(self.format_message(), limit=MESSAGE_LIMIT)}", err=True,
                   file=file)
