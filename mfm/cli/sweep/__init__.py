"""``mfm sweep``: a whole study as one file — plan it, run it, read its table. One module per
job: planning (plan, run), tables (show, list, export), acting (cancel, resume)."""

from __future__ import annotations

import click

from mfm.cli.sweep.acting import cancel_cmd, resume_cmd
from mfm.cli.sweep.planning import plan_cmd, run_cmd
from mfm.cli.sweep.tables import export_cmd, list_cmd, show_cmd

__all__ = ["sweep"]


@click.group()
def sweep() -> None:
    """Sweeps: a grid of settings (methods x imbalance factors x seeds ...) in one TOML file,
    planned against the records, queued as runs, read back as one table per study.

    \b
    Examples:
      mfm sweep plan bench/sweeps/quick.toml
      mfm sweep run bench/sweeps/quick.toml
      mfm sweep show 1 --markdown
    """


for _command in (plan_cmd, run_cmd, show_cmd, list_cmd, cancel_cmd, resume_cmd, export_cmd):
    sweep.add_command(_command)
