"""The ``mfm`` command: a click group over the library."""

from __future__ import annotations

import click

from mfm import __version__
from mfm.crashlog import guard
from mfm.cli.datasets import datasets
from mfm.cli.queue import cancel, logs, resume
from mfm.cli.worker import worker
from mfm.cli.records import export, runs, show
from mfm.cli.run import run

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


def main() -> None:
    guard("mfm", lambda: cli(prog_name="mfm"))


if __name__ == "__main__":
    main()
