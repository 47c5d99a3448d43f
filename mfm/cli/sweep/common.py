"""What the ``mfm sweep`` commands share: the console, durations, reading a sweep by id or
name, its cells as the arm table reads them, the file options."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console

from mfm.cli.context import App
from mfm.cli.control_words import refused
from mfm.runner.control import ControlError
from mfm.store import Database
from mfm.sweeps.table import (
    CellRun,
)


def _console() -> Console:
    con = Console()
    return con if con.is_terminal else Console(width=200)


def _duration(seconds: float) -> str:
    from mfm.sweeps.plan import duration_text

    return duration_text(seconds)


def _get(db: Database, ref: str, app: App) -> Any:
    """The sweep ``ref`` names (id or name): mfm.runner.control's reading."""
    from mfm.runner.control import RunControl

    try:
        return RunControl(db, db_target=app.db_target, runs_root=app.runs_root()).sweep(ref)
    except ControlError as e:
        raise refused(e) from None


def _cell_runs(db: Database, sweep_id: int, with_classes: bool = False) -> list[CellRun]:
    from mfm.sweeps.queueing import cell_runs

    return cell_runs(db, sweep_id, with_classes=with_classes)


_file_arg = click.argument("file", metavar="FILE")
_max_cells = click.option("--max-cells", type=click.IntRange(min=1), default=None,
                          help="Allow more cells than the file's max_cells (default 10000).")
_rerun_stale = click.option("--rerun-stale", is_flag=True,
                            help="Rerun cells whose finished run came from another code version.")
