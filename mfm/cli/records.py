"""Reading the records: ``mfm runs``, ``mfm show``, ``mfm export``."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mfm.cli import jsonout
from mfm.cli.context import App, pass_app
from mfm.cli.control_words import refused
from mfm.cli.errors import UserError
from mfm.cli.output import csv_text, write_output
from mfm.cli.progress import summary_table
from mfm.runner.control import ControlError, RunControl
from mfm.store import Database, RunRecord, repo
from mfm.store.records import ACTIVE, RunLink
from mfm.text import pct, visible

__all__ = ["runs", "show", "export", "run_document", "lineage_lines"]


# Characters of a run's name shown in the table (the full name: mfm show ID).
NAME_COLUMN = 60


def _when(ts: float | None, short: bool = False) -> str:
    fmt = "%m-%d %H:%M" if short else "%Y-%m-%d %H:%M"
    return "—" if ts is None else time.strftime(fmt, time.localtime(ts))


def _where(r: RunRecord, positions: dict[int, int], now: float) -> str:
    if r.status == "queued":  # the rule is the queue's: position, pins, what it waits for
        from mfm.store.records import wait_note

        return wait_note(r, positions.get(r.id))
    if r.status in ACTIVE:
        beat = "" if r.heartbeat_at is None else f" ♥{now - r.heartbeat_at:.0f}s"
        if r.job_id:  # a Slurm job's run: the job and Slurm's last word on it
            from mfm.store.records import job_note

            return f"{r.slot or '?'} {job_note(r)}{beat if r.status == 'running' else ''}"
        return f"{r.slot or r.device or '?'}{beat}"
    return ""


def _get_run(db: Database, run_id: int, app: App) -> RunRecord:
    try:
        return RunControl(db, db_target=app.db_target, runs_root=app.runs_root()).run(run_id)
    except ControlError as e:
        raise refused(e) from None


def _record_dict(rec: RunRecord) -> dict[str, Any]:
    d = dataclasses.asdict(rec)
    return d


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.option("--status", default=None, help="Only runs with this status.")
@click.option("--tag", "tag", default=None, metavar="TAG", help="Only runs with this tag.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most this many runs (newest first).")
@pass_app
def runs(app: App, as_json: bool, status: str | None, tag: str | None,
         limit: int | None) -> None:
    """List runs, newest first.

    \b
    Examples:
      mfm runs
      mfm runs --tag baseline
      mfm runs --status completed --json | jq '.[].summary.final.acc'
    """
    db = app.open_db()
    from mfm.store import STATUSES

    if status is not None and status not in STATUSES:
        raise UserError(f"--status: must be one of {' | '.join(STATUSES)} "
                        f"(got {visible(repr(status), limit=60)})")
    records = repo.list_runs(db, status=status, limit=limit, tag=tag, confusion=as_json)
    positions = RunControl(db, db_target=app.db_target,
                           runs_root=app.runs_root()).queue_positions()
    if as_json:
        click.echo(jsonout.dumps([{**_record_dict(r), "queue_position": positions.get(r.id)}
                               for r in records], indent=2))
        return
    now = time.time()
    table = Table(title=Text(f"runs in {app.shown} (data = dataset/imbalance "
                             "factor; where = queue position, or slot and heartbeat age)"),
                  title_justify="left")
    for col, just in (("id", "right"), ("name", "left"), ("status", "left"), ("data", "left"),
                      ("method", "left"), ("epoch", "right"), ("acc %", "right"),
                      ("best %", "right"), ("where", "left"), ("created", "left")):
        table.add_column(col, justify=just, no_wrap=col != "name")  # type: ignore[arg-type]
    for r in records:
        done = 0 if r.epoch is None else r.epoch + 1
        best = (r.summary or {}).get("best") or {}
        data = r.config.get("data", {})
        cells = (str(r.id), visible(r.name or "", limit=NAME_COLUMN), r.status,
                 f"{data.get('name', '?')}/{data.get('imbalance_factor', 0):g}",
                 r.method, f"{done}/{r.epochs_total}", pct(r.latest.get("acc")),
                 pct(best.get("acc")), _where(r, positions, now),
                 _when(r.created_at, short=True))
        # Text, never markup: a name such as "[/]" or "[bold]x" is shown as typed
        table.add_row(*(Text(visible(c)) for c in cells))
    con = Console()
    if not con.is_terminal:  # a pipe or a log: no terminal width to respect
        con = Console(width=200)
    con.print(table)


def lineage_lines(db: Database, rec: RunRecord, kids: list[RunLink]) -> list[str]:
    """``parent run 5 stage1 (completed), from its last.pt`` and ``children 7 (queued), 8
    (running)``: the runs a run starts from and that start from it (train.init_from)."""
    lines = []
    if rec.parent_id is not None:
        parent = repo.run_link(db, rec.parent_id)
        which = str(rec.config.get("train", {}).get("init_checkpoint", "last"))
        if parent is None:
            lines.append(f"parent run {rec.parent_id} (no longer in the records), from its "
                         f"{which}.pt")
        else:
            name = f" {visible(parent.name, limit=NAME_COLUMN)}" if parent.name else ""
            lines.append(f"parent run {parent.id}{name} ({parent.status}), from its "
                         f"{which}.pt")
    if kids:
        shown = ", ".join(f"{k.id} ({k.status})" for k in kids[:20])
        more = f" and {len(kids) - 20} more" if len(kids) > 20 else ""
        lines.append(f"children {shown}{more}")
    return lines


def class_rows(rec: RunRecord, class_acc: list[float] | None) -> list[dict[str, Any]]:
    """Per-class rows ordered head to tail by training count."""
    counts = rec.class_counts or {}
    train = counts.get("train", [])
    names = counts.get("classes", [str(i) for i in range(len(train))])
    meta = counts.get("meta", [0] * len(train))
    test = counts.get("test", [0] * len(train))
    rows = [{"class": c, "name": names[c], "train": train[c], "meta": meta[c], "test": test[c],
             "acc": None if class_acc is None else class_acc[c]} for c in range(len(train))]
    rows.sort(key=lambda r: (-r["train"], r["class"]))
    return rows


def run_document(db: Database, rec: RunRecord) -> dict[str, Any]:
    """Everything about a run as plain JSON-ready values."""
    return {
        "run": _record_dict(rec),
        "classes": class_rows(rec, repo.get_class_accuracy(db, rec.id)),
        "epochs": repo.get_epoch_series(db, rec.id),
        "class_accuracy": {str(k): v for k, v in repo.get_all_class_accuracy(db, rec.id).items()},
        "steps": {k: [dataclasses.asdict(p) for p in repo.get_step_series(db, rec.id, k)]
                  for k in repo.metric_keys(db, rec.id)},
    }


def per_class_plot(series: list[tuple[str, list[dict[str, Any]]]], width: int,
                   height: int) -> str:
    """A terminal chart: per-class accuracy (%) head to tail, one bar group per run; the x
    labels carry each class's training count."""
    import plotext

    plt = plotext._figure._figure_class()  # our own figure, never plotext's global one
    plt.plotsize(width, height)
    rows0 = series[0][1]
    labels = [f"{r['name']}:{r['train']}" for r in rows0]
    data = [[100 * (r["acc"] or 0.0) for r in rows] for _, rows in series]
    if len(series) == 1:
        plt.bar(labels, data[0], label=series[0][0], width=0.6)
    else:
        plt.multiple_bar(labels, data, labels=[name for name, _ in series])
    plt.ylim(0, 100)
    plt.title("per-class test accuracy (%) by class:training count, head → tail")
    plt.theme("clear")
    chart: str = plt.build()  # plotext is unannotated
    return chart


@click.command()
@click.argument("run_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@click.option("--plot", is_flag=True, help="Also draw per-class accuracy against training "
              "count as a terminal chart.")
@click.option("--vs", "others", type=int, multiple=True, metavar="ID",
              help="With --plot: runs to draw beside this one (same dataset spec).")
@click.option("--toml", "as_toml", is_flag=True,
              help="Print the run's resolved config as TOML (mfm run --config reads it).")
@pass_app
def show(app: App, run_id: int, as_json: bool, plot: bool, others: tuple[int, ...],
         as_toml: bool) -> None:
    """Show one run: its settings, summary, and per-class accuracy beside each class's
    training count (head to tail).

    \b
    Examples:
      mfm show 3
      mfm show 3 --json
      mfm show 3 --plot --vs 4 --vs 5      # ce vs mfm vs balanced softmax, class by class
      mfm show 3 --toml > again.toml       # then: mfm run --config again.toml
    """
    db = app.open_db()
    rec = _get_run(db, run_id, app)
    if as_toml:
        from mfm.tomltext import to_toml

        click.echo(to_toml(rec.config), nl=False)
        return
    class_acc = repo.get_class_accuracy(db, run_id)
    if plot:
        series = [(f"{rec.id} {rec.method}", class_rows(rec, class_acc))]
        for other in others:
            o = _get_run(db, other, app)
            if (o.class_counts or {}).get("train") != (rec.class_counts or {}).get("train"):
                raise UserError(f"--vs: run {other} was trained on another split than run "
                                f"{run_id}; per-class charts compare runs of one split")
            series.append((f"{o.id} {o.method}", class_rows(o, repo.get_class_accuracy(db, other))))
        if not series[0][1] or class_acc is None:
            raise UserError(f"--plot: run {run_id} has no per-class accuracy yet")
        con = Console()
        width = max(60, min(con.width, 160))
        click.echo(per_class_plot(series, width, 22))
        return
    kids = repo.children(db, run_id)
    if as_json:
        click.echo(jsonout.dumps({"run": _record_dict(rec),
                                  "children": [k.id for k in kids],
                                  "classes": class_rows(rec, class_acc)}, indent=2))
        return
    con = Console()
    cfg = rec.config
    data = cfg.get("data", {})
    head = Text()
    head.append(f"run {rec.id}", style="bold")
    head.append(f" {visible(rec.name or '')}  status ")
    head.append(rec.status, style="bold")
    head.append(visible(f"  {rec.method} on {data.get('name')}-LT (IF "
                        f"{data.get('imbalance_factor', 0):g}, {data.get('profile')}), "
                        f"{cfg.get('model', {}).get('name')}"))
    con.print(head)
    con.print(Text(visible(f"created {_when(rec.created_at)}  started {_when(rec.started_at)}  "
                           f"finished {_when(rec.finished_at)}  host {rec.host or '—'}  "
                           f"device {rec.device or '—'}  split {(rec.split_hash or '—')[:12]}")))
    done = 0 if rec.epoch is None else rec.epoch + 1
    con.print(Text(visible(f"epochs {done}/{rec.epochs_total}  checkpoints "
                           f"{rec.checkpoint_dir or '—'}")))
    for line in lineage_lines(db, rec, kids):
        con.print(Text(line))
    if rec.tags:
        con.print(Text("tags " + " ".join(visible(t) for t in rec.tags)))
    if rec.note:
        con.print(Text("note: " + " / ".join(visible(line) for line in rec.note.splitlines())))
    if rec.summary:
        con.print(summary_table(rec.id, rec.summary))
    if rec.error:
        con.print("[bold red]error[/bold red]:")
        for line in rec.error.rstrip().splitlines():  # a traceback keeps its lines
            con.print(Text(visible(line)), highlight=False)
    rows = class_rows(rec, class_acc)
    if rows:
        label = "final epoch" if rec.status == "completed" else "latest epoch"
        table = Table(title=f"per-class test accuracy ({label}), head to tail",
                      title_justify="left")
        for col, just in (("class", "right"), ("name", "left"), ("train", "right"),
                          ("meta", "right"), ("test", "right"), ("acc %", "right"),
                          ("", "left")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for r in rows:
            acc = r["acc"]
            bar = "" if acc is None else "█" * int(round(acc * 20))
            table.add_row(*(Text(visible(c)) for c in (
                str(r["class"]), str(r["name"]), str(r["train"]), str(r["meta"]),
                str(r["test"]), pct(acc), bar)))
        con.print(table)


@click.command()
@click.argument("run_id", metavar="ID", type=int)
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), required=True,
              help="csv: one row per epoch, numbered from 1 as mfm show numbers them (scalars, "
                   "then per-class accuracy); json: everything, as recorded (epoch indexes "
                   "from 0).")
@click.option("--output", "-o", metavar="FILE", default=None, help="Write here instead of stdout.")
@pass_app
def export(app: App, run_id: int, fmt: str, output: str | None) -> None:
    """Export one run's metrics.

    \b
    Examples:
      mfm export 3 --format csv -o run3.csv
      mfm export 3 --format json | jq .run.summary
    """
    db = app.open_db()
    rec = _get_run(db, run_id, app)
    if fmt == "json":
        text = jsonout.dumps(run_document(db, rec), indent=2)
    else:
        series = repo.get_epoch_series(db, run_id)
        per_class = repo.get_all_class_accuracy(db, run_id)
        keys = sorted(series)
        by_epoch: dict[int, dict[str, float]] = {}
        for k in keys:
            for ep, v in series[k]:
                by_epoch.setdefault(ep, {})[k] = v
        # the header covers every vector (a run recorded before its counts were stored too)
        n_classes = max([len((rec.class_counts or {}).get("train", []))]
                        + [len(v) for v in per_class.values()])
        text = csv_text(
            ["epoch", *keys, *[f"class_{c}_acc" for c in range(n_classes)]],
            ([ep + 1, *[by_epoch.get(ep, {}).get(k, "") for k in keys],
              *["" if v is None else v for v in per_class.get(ep, [None] * n_classes)]]
             for ep in sorted(set(by_epoch) | set(per_class))))
    emit(text if text.endswith("\n") else text + "\n", output)


def emit(text: str, output: str | None) -> None:
    """``text`` to stdout, or to ``-o``'s target (mfm.cli.output's rules; one line on stderr
    says where it went)."""
    if not output:
        click.echo(text, nl=False)
        return
    said = write_output(output, text)
    if said:
        click.echo(said, err=True)
