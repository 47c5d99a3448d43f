"""A rich progress bar and the final summary table for foreground runs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mfm.engine.callbacks import Callbacks, EpochResult, StartInfo
from mfm.text import pct

__all__ = ["RichProgress", "summary_table"]


def _pct(v: Any) -> str:
    return pct(v, 2)


class RichProgress(Callbacks):
    """Epoch bar and step bar with the latest loss and accuracy."""

    def __init__(self, console: Console, *, cells: tuple[int, int, str] | None = None):
        """``cells``: (index, total, label) of a sweep's cell: a third row over the cells."""
        self.console = console
        self.cells = cells
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}", markup=False), TimeElapsedColumn(), console=console,
            transient=False)
        self.epoch_task: Any = None
        self.step_task: Any = None
        self.loss: float | None = None   # none yet: an epoch shorter than train.log_every
        self.acc: float | None = None
        self.steps = 0

    def on_start(self, info: StartInfo) -> None:
        self.steps = info.steps_per_epoch
        self.progress.start()
        if self.cells is not None:
            index, total, label = self.cells
            self.progress.add_task("cells", total=total, completed=index, info=label)
        self.epoch_task = self.progress.add_task("epochs", total=info.epochs,
                                                 completed=info.start_epoch, info="")
        self.step_task = self.progress.add_task("steps", total=info.steps_per_epoch, info="")

    def on_epoch_start(self, epoch: int) -> None:
        self.progress.reset(self.step_task, total=self.steps,
                            description=f"epoch {epoch + 1}", info=self.info_text())

    def info_text(self) -> str:
        acc = "" if self.acc is None else f"  acc {_pct(self.acc)}%"
        loss = "loss —" if self.loss is None or self.loss != self.loss else \
            f"loss {self.loss:.4f}"
        return f"{loss}{acc}"

    def on_step(self, epoch: int, step: int, values: dict[str, float] | None) -> None:
        if values is not None and "loss" in values:
            self.loss = values["loss"]
        self.progress.update(self.step_task, advance=1, info=self.info_text())

    def on_epoch(self, result: EpochResult) -> None:
        self.acc = result.scalars.get("acc")
        loss = result.scalars.get("train_loss")
        if loss is not None:
            self.loss = loss
        self.progress.update(self.epoch_task, advance=1, info=self.info_text())

    def on_end(self, summary: dict[str, Any], confusion: list[list[int]]) -> None:
        self.stop()

    def stop(self) -> None:
        self.progress.stop()


def summary_table(run_id: int, summary: dict[str, Any]) -> Table:
    """Final vs best epoch: overall and many/medium/few-shot accuracy (%). The final epoch is
    the main number; the best epoch is chosen on the validation split when the run has one,
    else on the test split (optimistic), and its label says which."""
    table = Table(title=f"run {run_id}: test accuracy (%)", title_justify="left",
                  caption_justify="left")
    table.add_column("epoch")
    for col in ("overall", "many", "medium", "few"):
        table.add_column(col, justify="right")
    best_label = {"val": "best (by validation", "test": "best (by test: no validation split"
                  }.get(summary.get("best_on") or "", "best (by test")  # older summaries
    for label in ("final", "best"):
        e = summary.get(label) or {}
        ep = e.get("epoch")
        if label == "best":
            name = f"{best_label}, epoch {ep + 1})" if ep is not None else f"{best_label})"
        else:
            name = f"final (epoch {ep + 1})" if ep is not None else "final"
        table.add_row(name, _pct(e.get("acc")), _pct(e.get("many")), _pct(e.get("medium")),
                      _pct(e.get("few")))
    spe = summary.get("seconds_per_epoch")
    if spe is not None:
        table.caption = f"{spe:.2f} s/epoch on {summary.get('device')}"
    return table
