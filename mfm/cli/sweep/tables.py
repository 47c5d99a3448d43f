"""``mfm sweep show``, ``list`` and ``export``: a sweep read back as tables."""

from __future__ import annotations

import time

import click
from rich.table import Table
from rich.text import Text

from mfm.cli import jsonout
from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.cli.output import csv_text
from mfm.cli.sweep.common import (
    _cell_runs,
    _console,
    _get,
)
from mfm.store import Database
from mfm.store import sweeps as sweep_store
from mfm.store.records import LIVE
from mfm.sweeps.table import (
    COLUMNS,
    ArmRow,
    arm_rows,
    fmt_mean_std,
    per_class_mean,
    sort_rows,
)
from mfm.text import visible


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


def print_arm_table(app: App, db: Database, sweep_id: int, sort: str | None, fmt: str) -> None:
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
        keys = ("acc", "many", "medium", "few", "val_acc", "best_acc", "seconds_per_epoch",
                "seconds_to_95")
        rows_out = []
        for r in rows:
            vals: list[object] = []
            for k in keys:
                ms = r.stat(k)
                vals += ["", ""] if ms is None else [f"{ms[0]:.6g}", f"{ms[1]:.6g}"]
            rows_out.append([r.arm, r.cells, r.finished, *vals])
        click.echo(csv_text(["arm", "cells", "finished",
                             *[f"{k}_{s}" for k in keys for s in ("mean", "std")]], rows_out),
                   nl=False)
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
    con.print("* best epoch chosen on the validation split where the runs have one, else on "
              "test (optimistic)", markup=False)
    notes = ["s/epoch: wall-clock seconds per epoch on the machine that trained it, at that "
             "time; it moves with whatever else ran there: compare runs of one sitting"]
    if "seconds_to_95" in cols:
        notes.append("t95 s: training seconds until a run first reached 95 % of its final "
                     "validation accuracy (test accuracy for runs without a validation split)")
    for note in notes:
        con.print(note, markup=False)


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


@click.command("show")
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
    validation accuracy where recorded, best-epoch accuracy (chosen on validation, else on
    test), seconds per epoch, finished / cells.

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
    print_arm_table(app, db, rec.id, sort, fmt or "table")


@click.command("list")
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
    table = Table(title=Text(f"sweeps in {app.shown}"), title_justify="left")
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


@click.command("export")
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
    from mfm.cli.records import emit

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
        metrics = ("acc", "many", "medium", "few", "val_acc")
        summaries = [((c.run.summary or {}) if c.run is not None else {}) for c in cells]
        text = csv_text(
            ["cell", "arm", "seed", "run_id", "status", *[f"final_{m}" for m in metrics],
             "best_acc", "seconds_per_epoch", "config"],
            ([c.idx + 1, c.arm, c.seed, "" if c.run is None else c.run.id,
              "" if c.run is None else c.run.status,
              *[(s.get("final") or {}).get(m, "") for m in metrics],
              (s.get("best") or {}).get("acc", ""), s.get("seconds_per_epoch", ""),
              "" if c.run is None else jsonout.dumps(c.run.config)]
             for c, s in zip(cells, summaries)))
    emit(text, output)
