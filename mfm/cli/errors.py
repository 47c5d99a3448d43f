"""One-line user errors with exit code 2."""

from __future__ import annotations

from typing import IO, Any

import click

__all__ = ["UserError"]


class UserError(click.ClickException):
    """Bad input: printed as one line ``error: ...`` on stderr, exit code 2."""

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True, file=file)
