"""The ``mfm`` command: a click group over the library."""

from __future__ import annotations

import sys

import click

from mfm import __version__
from mfm.cli.annotate import note, tag
from mfm.cli.datasets import datasets
from mfm.cli.db import db
from mfm.cli.errors import MESSAGE_LIMIT, UserError, cli_message, store_error
from mfm.cli.queue import cancel, logs, resume
from mfm.cli.records import export, runs, show
from mfm.cli.run import run
from mfm.cli.sweep import sweep
from mfm.cli.worker import worker
from mfm.crashlog import guard
from mfm.store.errors import DamagedStore, QueueError, StoreError
from mfm.text import one_line

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", "db", metavar="PATH|URL", default=None,
              help="Records: a SQLite path or any SQLAlchemy URL "
                   "[env MFM_DB; default ./experiments.db].")
@click.version_option(__version__, prog_name="mfm")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:  # noqa: ARG001 (read by pass_app)
    """mfm: long-tailed image recognition with the Meta Feature Modulator.

    \b
    Example:
      mfm run --headless --set train.epochs=5
      mfm runs
      mfm show 1
    """


cli.add_command(run)
cli.add_command(runs)
cli.add_command(show)
cli.add_command(export)
cli.add_command(datasets)
cli.add_command(cancel)
cli.add_command(resume)
cli.add_command(logs)
cli.add_command(worker)
cli.add_command(sweep)
cli.add_command(db)
cli.add_command(tag)
cli.add_command(note)


def _invoke(argv: list[str] | None) -> None:
    """click without its standalone error printing: every usage error is one line (click's
    own is three: usage, hint, error). A store error no command caught is worded for the
    command line too ("--db: ...", "ID: ..."): exit 1 for the records' faults (StoreError),
    2 for a request the queue refused (QueueError)."""
    try:
        code = cli.main(args=argv, prog_name="mfm", standalone_mode=False)
    except StoreError as e:  # damaged records: the --db given cannot be used (as at open)
        click.echo(f"error: {one_line(cli_message(e), limit=MESSAGE_LIMIT)}", err=True)
        sys.exit(UserError.exit_code if isinstance(e, DamagedStore) else 1)
    except QueueError as e:
        store_error(e).show()
        sys.exit(UserError.exit_code)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.UsageError as e:
        command = e.ctx.command_path if e.ctx is not None else "mfm"
        click.echo(f"error: {one_line(e.format_message())} (see {command} --help)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    guard("mfm", lambda: _invoke(argv))


if __name__ == "__main__":
    main()
