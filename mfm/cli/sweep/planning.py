"""``mfm sweep plan`` and ``mfm sweep run``: a sweep file read, planned against the records, queued
or trained here."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from mfm.cli import jsonout
from mfm.cli.context import App, pass_app
from mfm.cli.control_words import open_control, supervisor_text
from mfm.cli.errors import UserError
from mfm.cli.sweep.common import (
    _console,
    _duration,
    _file_arg,
    _max_cells,
    _rerun_stale,
)
from mfm.cli.sweep.tables import print_arm_table
from mfm.store import Database
from mfm.store import sweeps as sweep_store
from mfm.sweeps.plan import SweepPlan
from mfm.sweeps.spec import SweepError, SweepSpec, read_sweep
from mfm.text import check_name, visible


def _read(path: str, overrides: tuple[str, ...] = ()) -> SweepSpec:
    """The sweep file, with ``--set`` overrides laid over its base (under the grid)."""
    import dataclasses

    from mfm.config import ConfigError, parse_override

    try:
        spec = read_sweep(path)
    except SweepError as e:
        raise UserError(str(e)) from None
    base = dict(spec.base)
    for item in overrides:
        try:
            key, value = parse_override(item)
        except ConfigError as e:
            raise UserError(f"--set: {e}") from None
        if isinstance(value, tuple):
            value = list(value)
        if "." in key:
            sec, _, field_name = key.partition(".")
            base[sec] = {**base.get(sec, {}), field_name: value}
        else:
            base[key] = value
    return dataclasses.replace(spec, base=base)


def _plan(app: App, db: Database, spec: SweepSpec, rerun_stale: bool,
          max_cells: int | None) -> SweepPlan:
    from mfm.runner.launch import code_version
    from mfm.sweeps.plan import plan_sweep

    try:
        return plan_sweep(db, spec, code_version=code_version(), rerun_stale=rerun_stale,
                          max_cells=max_cells)
    except SweepError as e:
        raise UserError(str(e)) from None


def _plan_summary(plan: SweepPlan) -> str:
    return plan.summary()


def _refusal(db: Database, plan: SweepPlan) -> str | None:
    """What ``mfm sweep run`` would refuse this plan for (data missing, a transfer source
    that is not there), in one line, or None: the same checks, run now."""
    from mfm.sweeps.queueing import SweepQueueError, check_cells

    try:
        check_cells(db, plan.to_run)
    except SweepQueueError as e:
        return str(e)
    return None


@click.command("plan")
@_file_arg
@_rerun_stale
@_max_cells
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override a setting of the file's base for every cell (the grid still "
                   "wins), e.g. --set data.root=~/data --set device=cuda.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@pass_app
def plan_cmd(app: App, file: str, rerun_stale: bool, max_cells: int | None,
             overrides: tuple[str, ...], as_json: bool) -> None:
    """Show a sweep file's cells, which finished runs answer them, and the cost of the rest.
    Nothing is recorded.

    \b
    Example:
      mfm sweep plan study.toml
    """
    spec = _read(file, overrides)
    db = app.open_db()
    plan = _plan(app, db, spec, rerun_stale, max_cells)
    refusal = _refusal(db, plan)
    if as_json:
        click.echo(jsonout.dumps({
            "name": spec.name, "estimate_seconds": plan.estimate_seconds,
            "run_refuses": refusal,
            "cells": [{"idx": c.cell.index, "arm": c.cell.arm, "seed": c.cell.seed,
                       "action": c.action, "run_id": None if c.run is None else c.run.id,
                       "estimate_seconds": c.estimate_seconds, "config_hash": c.config_hash,
                       "parent_idx": c.parent}
                      for c in plan.cells]}, indent=2))
        return
    table = Table(title=Text(f"sweep {visible(spec.name)}: plan"), title_justify="left")
    lineage = any(c.parent is not None for c in plan.cells)
    for col, just in (("cell", "right"), ("arm", "left"), ("seed", "right"),
                      ("action", "left"), ("run", "right"), ("estimate", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    if lineage:  # stage-2 cells start from their parent cell's run (train.init_from)
        table.add_column("after", justify="left")
    for c in plan.cells:
        row = [str(c.cell.index + 1), visible(c.cell.arm), str(c.cell.seed), c.action,
               "" if c.run is None else str(c.run.id),
               "" if c.estimate_seconds is None else _duration(c.estimate_seconds)]
        if lineage:
            row.append("" if c.parent is None else f"cell {c.parent + 1}")
        table.add_row(*(Text(x) for x in row))
    con = _console()
    con.print(table)
    con.print(Text(_plan_summary(plan)))
    if refusal is not None:
        click.echo(f"warning: mfm sweep run will refuse this plan: {refusal}", err=True)


#: more runs than this to queue (or train) at once are asked about first (--yes skips)
CONFIRM_ABOVE = 200


def _confirm_size(n: int, yes: bool) -> None:
    """Ask before queueing more than CONFIRM_ABOVE runs; without a terminal to ask on, refuse
    in one line unless --yes."""
    if n <= CONFIRM_ABOVE or yes:
        return
    if not sys.stdin.isatty():
        raise UserError(f"--yes: this would queue {n} runs (more than {CONFIRM_ABOVE}); "
                        "check with mfm sweep plan, then pass --yes")
    if not click.confirm(f"queue {n} runs?", default=False, err=True):
        raise UserError(f"--yes: not confirmed; nothing was queued ({n} runs)")


@click.command("run")
@_file_arg
@click.option("--name", default=None, help="The sweep's name (default: the file's name key, "
              "else its file name). Running a file again under the same name adds only what "
              "is missing.")
@click.option("--headless", is_flag=True,
              help="Train the cells here, one after another, with progress bars (default: "
                   "queue them for the background supervisor).")
@_rerun_stale
@_max_cells
@click.option("--set", "overrides", metavar="KEY=VALUE", multiple=True,
              help="Override a setting of the file's base for every cell (the grid still "
                   "wins), e.g. --set data.root=~/data --set device=cuda.")
@click.option("--slot", default="", metavar="SLOT", help="Queue every cell for this slot or GPU.")
@click.option("--yes", "-y", "yes", is_flag=True,
              help=f"Queue without asking when more than {CONFIRM_ABOVE} runs are to be queued.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local",
              help="slurm: every cell becomes a Slurm job of the `mfm worker --executor slurm` "
                   "serving this database (the same as --slot slurm).")
@pass_app
def run_cmd(app: App, file: str, name: str | None, headless: bool, rerun_stale: bool,
            max_cells: int | None, overrides: tuple[str, ...], slot: str, yes: bool,
            executor: str) -> None:
    """Record a sweep and queue (or, with --headless, train) every cell no finished run
    answers; print the arm table when --headless ends.

    \b
    Examples:
      mfm sweep run study.toml                 # queued; watch with mfm sweep show NAME
      mfm sweep run study.toml --headless      # here, in the foreground
      mfm sweep run study.toml --name study-v2 --rerun-stale
    """
    if name is not None and (why := check_name("--name", name)):
        raise UserError(why)
    if executor == "slurm":
        if headless:
            raise UserError("--executor: slurm is for queued cells; --headless trains in this "
                            "process")
        if slot and slot.strip() != "slurm":
            raise UserError(f"--slot: {visible(slot, 40)} is a local slot; --executor slurm "
                            "runs every cell in a Slurm job")
        slot = "slurm"
    if headless and slot:
        raise UserError("--slot: only for queued cells; --headless trains in this process")
    spec = _read(file, overrides)
    if name:
        spec = SweepSpec(**{**spec.__dict__, "name": name})
    db = app.open_db()
    plan = _plan(app, db, spec, rerun_stale, max_cells)
    from mfm.runner.launch import code_version
    from mfm.sweeps.queueing import SweepQueueError, check_cells, queue_sweep, record_sweep

    todo = plan.to_run
    _confirm_size(len(todo), yes)
    version = code_version()
    if headless:
        try:  # every cell before anything is recorded: all or nothing
            check_cells(db, todo)
        except SweepQueueError as e:
            raise UserError(str(e)) from None
        _check_here(db, todo)
        rec = record_sweep(db, plan, code_version=version)
        click.echo(f"sweep {rec.id} {visible(spec.name)}: {_plan_summary(plan)}", err=True)
        failed = _run_here(app, db, rec.id, todo)
        print_arm_table(app, db, rec.id, None, "table")
        if failed:
            sys.exit(1)
        return
    try:
        queued = queue_sweep(db, plan, db_target=app.db_target, runs_root=app.runs_root(),
                             code_version=version, slot=slot)
    except SweepQueueError as e:
        raise UserError(str(e)) from None
    click.echo(f"sweep {queued.sweep_id} {visible(spec.name)}: {_plan_summary(plan)}",
               err=True)
    if todo and slot == "slurm":  # the Slurm worker takes them; no local supervisor needed
        click.echo(f"queued {len(queued.new_run_ids)} new and resumed "
                   f"{len(queued.resumed_run_ids)} cells for Slurm (mfm worker --executor "
                   f"slurm serves them). Watch: mfm sweep show {queued.sweep_id}", err=True)
    elif todo:
        control = open_control(app)
        note = control.ensure_supervisor()
        click.echo(f"queued {len(queued.new_run_ids)} new and resumed "
                   f"{len(queued.resumed_run_ids)} cells; "
                   f"{supervisor_text(note, control.db.display)}. Watch: mfm sweep show "
                   f"{queued.sweep_id}", err=True)
    click.echo(str(queued.sweep_id))


def _check_here(db: Database, todo: list[Any]) -> None:
    """What training here needs beyond the queue-time checks: the full transfer check (loads
    torch), the full parent check (its run completed, its checkpoint sound) of a cell whose
    parent cell is not trained here too, and a device this host has — refused before any cell
    trains."""
    from mfm.config import ConfigError
    from mfm.engine import resolve_device
    from mfm.lineage import arm_name
    from mfm.runner.preflight import PreflightError
    from mfm.runner.run_options import method_options, resolve_init

    here = {c.cell.index for c in todo}
    for c in todo:
        try:
            method_options(db, c.cell.config)
            if c.parent not in here and arm_name(c.cell.config.train.init_from) is None:
                resolve_init(db, c.cell.config)
        except PreflightError as e:
            raise UserError(f"cell {c.cell.index + 1} ({visible(c.cell.arm)}, seed "
                            f"{c.cell.seed}): {e}") from None
    for device in dict.fromkeys(c.cell.config.device for c in todo):
        try:
            resolve_device(device)
        except ConfigError as e:
            raise UserError(str(e)) from None


def _run_here(app: App, db: Database, sweep_id: int, todo: list[Any]) -> int:
    """Train ``todo`` here, one cell after another, parents before children (each run records
    the code version that trained it, so running the file again reuses it). A child of a
    cell trained here starts from that cell's new run, and its cell's identity follows.
    Returns how many cells did not complete."""
    from mfm.cli.foreground import train_in_foreground
    from mfm.lineage import arm_name
    from mfm.sweeps.queueing import resolved_child

    failed = 0
    made: dict[int, int] = {}  # cell index -> the run trained for it here
    for i, c in enumerate(todo):
        label = f"{c.cell.arm} · seed {c.cell.seed}"
        recorded_hash = c.config_hash
        if arm_name(c.cell.config.train.init_from) is not None:
            parent = made.get(c.parent) if c.parent is not None else None
            if parent is None:  # its parent cell's run could not even be recorded
                failed += 1
                click.echo(f"cell {i + 1} ({visible(label)}): its parent cell "
                           f"{(c.parent or 0) + 1} has no run", err=True)
                continue
            c = resolved_child(c, parent)
        run_id = c.run.id if c.action == "resume" and c.run is not None else None
        name = f"{c.cell.arm} · seed {c.cell.seed}"[:200]
        try:
            run_id, outcome, _ = train_in_foreground(app, c.cell.config, name, {},
                                                     cells=(i, len(todo), label),
                                                     run_id=run_id)
        except UserError as e:  # its resume or its parent was refused (a checkpoint is gone,
            # the parent cell's run failed)
            failed += 1
            click.echo(f"cell {i + 1} ({visible(label)}): {e.format_message()}", err=True)
            continue
        made[c.cell.index] = run_id
        sweep_store.link_cell(db, sweep_id, recorded_hash, run_id, new_hash=c.config_hash)
        if outcome.status == "cancelled":
            click.echo(f"error: sweep stopped: run {run_id} was cancelled (mfm sweep run again "
                       "continues with what is missing)", err=True)
            sys.exit(130)
        if outcome.status != "completed":
            failed += 1
            click.echo(f"run {run_id} ({visible(label)}) {outcome.status}: "
                       f"{visible(outcome.reason or '', 200)}", err=True)
    if failed:
        click.echo(f"{failed} of {len(todo)} cells failed (mfm sweep resume {sweep_id})",
                   err=True)
    return failed
