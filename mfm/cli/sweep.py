"""``mfm sweep``: a whole study as one file — plan it, run it, read its table."""

from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mfm.cli import jsonout
from mfm.cli.context import App, pass_app
from mfm.cli.control_words import open_control, refused, supervisor_text
from mfm.cli.errors import UserError
from mfm.runner.control import ControlError
from mfm.store import Database
from mfm.store import sweeps as sweep_store
from mfm.store.records import LIVE
from mfm.sweeps.plan import SweepPlan
from mfm.sweeps.spec import SweepError, SweepSpec, read_sweep
from mfm.sweeps.table import (
    COLUMNS,
    ArmRow,
    CellRun,
    arm_rows,
    fmt_mean_std,
    per_class_mean,
    sort_rows,
)
from mfm.text import check_name, visible

__all__ = ["sweep"]


def _console() -> Console:
    con = Console()
    return con if con.is_terminal else Console(width=200)


def _duration(seconds: float) -> str:
    from mfm.sweeps.plan import duration_text

    return duration_text(seconds)


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


_file_arg = click.argument("file", metavar="FILE")
_max_cells = click.option("--max-cells", type=click.IntRange(min=1), default=None,
                          help="Allow more cells than the file's max_cells (default 10000).")
_rerun_stale = click.option("--rerun-stale", is_flag=True,
                            help="Rerun cells whose finished run came from another code version.")


@sweep.command("plan")
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
    if as_json:
        click.echo(jsonout.dumps({
            "name": spec.name, "estimate_seconds": plan.estimate_seconds,
            "cells": [{"idx": c.cell.index, "arm": c.cell.arm, "seed": c.cell.seed,
                       "action": c.action, "run_id": None if c.run is None else c.run.id,
                       "estimate_seconds": c.estimate_seconds, "config_hash": c.config_hash}
                      for c in plan.cells]}, indent=2))
        return
    table = Table(title=Text(f"sweep {visible(spec.name)}: plan"), title_justify="left")
    for col, just in (("cell", "right"), ("arm", "left"), ("seed", "right"),
                      ("action", "left"), ("run", "right"), ("estimate", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in plan.cells:
        table.add_row(*(Text(x) for x in (
            str(c.cell.index + 1), visible(c.cell.arm), str(c.cell.seed), c.action,
            "" if c.run is None else str(c.run.id),
            "" if c.estimate_seconds is None else _duration(c.estimate_seconds))))
    con = _console()
    con.print(table)
    con.print(Text(_plan_summary(plan)))


@sweep.command("run")
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
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local",
              help="slurm: every cell becomes a Slurm job of the `mfm worker --executor slurm` "
                   "serving this database (the same as --slot slurm).")
@pass_app
def run_cmd(app: App, file: str, name: str | None, headless: bool, rerun_stale: bool,
            max_cells: int | None, overrides: tuple[str, ...], slot: str,
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
        _print_table(app, db, rec.id, None, "table")
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
    torch) and a device this host has — refused before any cell trains."""
    from mfm.config import ConfigError
    from mfm.engine import resolve_device
    from mfm.runner.preflight import PreflightError
    from mfm.runner.run_options import method_options

    for c in todo:
        try:
            method_options(db, c.cell.config)
        except PreflightError as e:
            raise UserError(f"cell {c.cell.index + 1} ({visible(c.cell.arm)}, seed "
                            f"{c.cell.seed}): {e}") from None
    for device in dict.fromkeys(c.cell.config.device for c in todo):
        try:
            resolve_device(device)
        except ConfigError as e:
            raise UserError(str(e)) from None


def _run_here(app: App, db: Database, sweep_id: int, todo: list[Any]) -> int:
    """Train ``todo`` here, one cell after another (each run records the code version that
    trained it, so running the file again reuses it). Returns how many cells did not
    complete."""
    from mfm.cli.foreground import train_in_foreground

    failed = 0
    for i, c in enumerate(todo):
        label = f"{c.cell.arm} · seed {c.cell.seed}"
        run_id = c.run.id if c.action == "resume" and c.run is not None else None
        name = f"{c.cell.arm} · seed {c.cell.seed}"[:200]
        try:
            run_id, outcome, _ = train_in_foreground(app, c.cell.config, name, {},
                                                     cells=(i, len(todo), label),
                                                     run_id=run_id)
        except UserError as e:  # its resume was refused (its checkpoint is gone)
            failed += 1
            click.echo(f"cell {i + 1} ({visible(label)}): {e.format_message()}", err=True)
            continue
        sweep_store.link_cell(db, sweep_id, c.config_hash, run_id)
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


def _row_cells(r: ArmRow) -> dict[str, str]:
    out = {"arm": r.arm, "done": f"{r.finished}/{r.cells}"}
    for k in ("acc", "many", "medium", "few", "val_acc", "best_acc"):
        out[k] = fmt_mean_std(r.stat(k), n=len(r.values.get(k, [])))
    spe = r.stat("seconds_per_epoch")
    out["seconds_per_epoch"] = "—" if spe is None else f"{spe[0]:.2f}"
    t95 = r.stat("seconds_to_95")
    out["seconds_to_95"] = "—" if t95 is None else f"{t95[0]:.0f}"
    return out


def _columns(rows: list[ArmRow]) -> list[str]:
    """Every column, leaving out validation accuracy when no run held a validation split and
    time to accuracy when no run recorded it (runs from before it was recorded)."""
    return [c for c in COLUMNS if c not in ("val_acc", "seconds_to_95")
            or any(r.stat(c) for r in rows)]


def _print_table(app: App, db: Database, sweep_id: int, sort: str | None, fmt: str) -> None:
    rec = sweep_store.get_sweep(db, sweep_id)
    assert rec is not None
    rows = arm_rows(_cell_runs(db, sweep_id))
    try:
        rows = sort_rows(rows, sort)
    except ValueError as e:
        raise UserError(str(e)) from None
    cols = _columns(rows)
    texts = [_row_cells(r) for r in rows]
    if fmt == "json":
        click.echo(jsonout.dumps({
            "sweep": {"id": rec.id, "name": rec.name, "cells": rec.cells,
                      "statuses": rec.statuses},
            "arms": [{"arm": r.arm, "cells": r.cells, "finished": r.finished,
                      "statuses": r.statuses,
                      **{k: (None if (ms := r.stat(k)) is None else
                             {"mean": ms[0], "std": ms[1], "n": len(r.values.get(k, []))})
                         for k in ("acc", "many", "medium", "few", "val_acc", "best_acc",
                                   "seconds_per_epoch", "seconds_to_95")}}
                     for r in rows]}, indent=2))
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["arm", "cells", "finished", *[f"{k}_{s}" for k in
                   ("acc", "many", "medium", "few", "val_acc", "best_acc", "seconds_per_epoch",
                    "seconds_to_95")
                   for s in ("mean", "std")]])
        for r in rows:
            vals = []
            for k in ("acc", "many", "medium", "few", "val_acc", "best_acc",
                      "seconds_per_epoch", "seconds_to_95"):
                ms = r.stat(k)
                vals += ["", ""] if ms is None else [f"{ms[0]:.6g}", f"{ms[1]:.6g}"]
            w.writerow([r.arm, r.cells, r.finished, *vals])
        click.echo(buf.getvalue(), nl=False)
        return
    if fmt == "markdown":
        heads = [COLUMNS[c] for c in cols]
        lines = ["| " + " | ".join(heads) + " |",
                 "|" + "|".join("---" if c == "arm" else "---:" for c in cols) + "|"]
        for t in texts:
            lines.append("| " + " | ".join(t[c].replace("|", "\\|") for c in cols) + " |")
        click.echo("\n".join(lines))
        return
    progress = ", ".join(f"{k} {v}" for k, v in sorted((rec.statuses or {}).items()))
    table = Table(title=Text(f"sweep {rec.id} {visible(rec.name)}: mean ± std over seeds "
                             f"(final epoch, test split; {progress or 'no cells'})"),
                  title_justify="left")
    short = {"arm": "arm", "done": "done", "acc": "acc %", "many": "many %",
             "medium": "medium %", "few": "few %", "val_acc": "val %",
             "best_acc": "best* %", "seconds_per_epoch": "s/epoch", "seconds_to_95": "t95 s"}
    for c in cols:
        table.add_column(short[c], justify="left" if c == "arm" else "right")
    for t in texts:
        table.add_row(*(Text(visible(t[c])) for c in cols))
    con = _console()
    con.print(table)
    con.print("* best epoch by test accuracy: chosen on the test split, so optimistic",
              markup=False)


def _print_per_class(db: Database, sweep_id: int, arms: tuple[str, ...], as_json: bool) -> None:
    cells = _cell_runs(db, sweep_id, with_classes=True)
    known = list(dict.fromkeys(c.arm for c in cells))
    for a in arms:
        if a not in known:
            raise UserError(f"--per-class: no arm {visible(repr(a), 80)} in sweep {sweep_id} "
                            f"(arms: {visible('; '.join(known), 400)})")
    series = {a: per_class_mean(cells, a) for a in arms}
    if as_json:
        click.echo(jsonout.dumps(series, indent=2))
        return
    first = next((s for s in series.values() if s), [])
    if not first:
        raise UserError(f"--per-class: no completed run with per-class accuracy in "
                        f"{visible('; '.join(arms), 200)} yet")
    table = Table(title="per-class test accuracy %, mean ± std over seeds, head to tail",
                  title_justify="left")
    for col in ("class", "train"):
        table.add_column(col, justify="right")
    for a in arms:
        table.add_column(Text(visible(a, 40)), justify="right")
    by_class = {a: {r["class"]: r for r in s} for a, s in series.items()}
    for r in first:
        row = [Text(visible(r["name"])), Text(str(r["train"]))]
        for a in arms:
            x = by_class[a].get(r["class"])
            row.append(Text("—" if x is None or x["mean"] is None
                            else f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f}"))
        table.add_row(*row)
    _console().print(table)


@sweep.command("show")
@click.argument("ref", metavar="ID|NAME")
@click.option("--json", "fmt", flag_value="json", help="JSON on stdout.")
@click.option("--markdown", "fmt", flag_value="markdown", help="A Markdown table (for docs).")
@click.option("--csv", "fmt", flag_value="csv", help="CSV on stdout.")
@click.option("--sort", "sort", default=None, metavar="COLUMN",
              help=f"Sort arms by a column: {' | '.join(COLUMNS)} (best first).")
@click.option("--per-class", "per_class", multiple=True, metavar="ARM",
              help="Per-class mean over seeds of this arm, head to tail (give two to compare).")
@pass_app
def show_cmd(app: App, ref: str, fmt: str | None, sort: str | None,
             per_class: tuple[str, ...]) -> None:
    """One row per arm: mean ± std over seeds of final accuracy, many / medium / few,
    validation accuracy where recorded, best-epoch accuracy (chosen on test), seconds per
    epoch, finished / cells.

    \b
    Examples:
      mfm sweep show 1
      mfm sweep show quick --markdown --sort acc
      mfm sweep show 1 --per-class mfm --per-class ce
    """
    db = app.open_db()
    rec = _get(db, ref, app)
    if per_class:
        _print_per_class(db, rec.id, per_class, fmt == "json")
        return
    _print_table(app, db, rec.id, sort, fmt or "table")


@sweep.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
@pass_app
def list_cmd(app: App, as_json: bool) -> None:
    """Every sweep with its progress, newest first.

    \b
    Example:
      mfm sweep list
    """
    db = app.open_db()
    recs = sweep_store.list_sweeps(db)
    if as_json:
        click.echo(jsonout.dumps([{"id": r.id, "name": r.name, "cells": r.cells,
                                   "statuses": r.statuses, "updated_at": r.updated_at}
                                  for r in recs], indent=2))
        return
    table = Table(title=Text(f"sweeps in {visible(app.db_target)}"), title_justify="left")
    for col, just in (("id", "right"), ("name", "left"), ("cells", "right"),
                      ("completed", "right"), ("active", "right"), ("failed", "right"),
                      ("updated", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in recs:
        st = r.statuses or {}
        active = sum(st.get(k, 0) for k in LIVE)
        bad = sum(st.get(k, 0) for k in ("failed", "cancelled", "lost"))
        table.add_row(*(Text(x) for x in (
            str(r.id), visible(r.name, 60), str(r.cells), str(st.get("completed", 0)),
            str(active), str(bad), time.strftime("%m-%d %H:%M", time.localtime(r.updated_at)))))
    _console().print(table)


@sweep.command("cancel")
@click.argument("ref", metavar="ID|NAME")
@pass_app
def cancel_cmd(app: App, ref: str) -> None:
    """Cancel every queued or running run of a sweep (finished runs stay); a run in a Slurm
    job has its job cancelled.

    \b
    Example:
      mfm sweep cancel 1
    """
    try:
        done = open_control(app).cancel_sweep(ref)
    except ControlError as e:
        raise refused(e) from None
    click.echo(f"sweep {done.sweep_id}: cancel sent to {len(done.runs)} runs")


@sweep.command("resume")
@click.argument("ref", metavar="ID|NAME")
@pass_app
def resume_cmd(app: App, ref: str) -> None:
    """Queue every failed, cancelled or lost run of a sweep again (each continues from its
    last checkpoint, or starts afresh if it never finished an epoch).

    \b
    Example:
      mfm sweep resume 1
    """
    try:
        done = open_control(app).resume_sweep(ref)
    except ControlError as e:
        raise refused(e) from None
    for run_id, status, why in done.skipped:
        click.echo(f"run {run_id}: left as {status}: {why}", err=True)
    click.echo(f"sweep {done.sweep_id}: {len(done.run_ids)} runs queued again")


@sweep.command("export")
@click.argument("ref", metavar="ID|NAME")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), required=True,
              help="csv: one row per cell; json: the sweep with every run's config and summary.")
@click.option("--output", "-o", metavar="FILE", default=None, help="Write here, not stdout.")
@pass_app
def export_cmd(app: App, ref: str, fmt: str, output: str | None) -> None:
    """Export a sweep: every cell with its run's config and summary.

    \b
    Example:
      mfm sweep export 1 --format csv -o study.csv
    """
    from mfm.cli.records import _write_output

    db = app.open_db()
    rec = _get(db, ref, app)
    cells = sweep_store.sweep_cells(db, rec.id)
    if fmt == "json":
        text = jsonout.dumps({
            "sweep": {"id": rec.id, "name": rec.name, "file": rec.file_text, "grid": rec.grid,
                      "code_version": rec.code_version},
            "cells": [{"idx": c.idx, "arm": c.arm, "seed": c.seed, "config_hash": c.config_hash,
                       "run": None if c.run is None else {
                           "id": c.run.id, "status": c.run.status, "config": c.run.config,
                           "summary": c.run.summary, "code_version": c.run.code_version}}
                      for c in cells]}, indent=2) + "\n"
    else:
        buf = io.StringIO()
        w = csv.writer(buf)
        metrics = ("acc", "many", "medium", "few", "val_acc")
        w.writerow(["cell", "arm", "seed", "run_id", "status", *[f"final_{m}" for m in metrics],
                    "best_acc", "seconds_per_epoch", "config"])
        for c in cells:
            s = (c.run.summary or {}) if c.run is not None else {}
            final = s.get("final") or {}
            w.writerow([c.idx + 1, c.arm, c.seed, "" if c.run is None else c.run.id,
                        "" if c.run is None else c.run.status,
                        *[final.get(m, "") for m in metrics],
                        (s.get("best") or {}).get("acc", ""), s.get("seconds_per_epoch", ""),
                        "" if c.run is None else jsonout.dumps(c.run.config)])
        text = buf.getvalue()
    if output:
        _write_output(Path(output), text)
    else:
        click.echo(text, nl=False)

