"""A sweep's table from the records: one row per arm, mean ± std over its seeds.

Plain values in, plain values out (no database, no terminal): the CLI renders rows as a Rich
table, Markdown or CSV, and the TUI as a DataTable. Accuracy is the final epoch's on the test
split; "best" is the best epoch's test accuracy, the epoch chosen on the validation split
where the runs held one out, else on test (then optimistic; labelled wherever it is shown);
validation accuracy appears where the runs held out a validation split.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CellRun", "ArmRow", "arm_rows", "per_class_mean", "COLUMNS", "sort_rows",
           "mean_std", "fmt_mean_std"]

METRICS = ("acc", "many", "medium", "few", "val_acc", "best_acc", "seconds_per_epoch",
           "seconds_to_95")
# Column name -> (header, what it means): the order of the table.
COLUMNS: dict[str, str] = {
    "arm": "arm",
    "done": "finished / cells",
    "acc": "final test accuracy %",
    "many": "many-shot %",
    "medium": "medium-shot %",
    "few": "few-shot %",
    "val_acc": "validation accuracy %",
    "best_acc": "best-epoch test accuracy % (chosen on validation where runs have a split, "
                "else on test: optimistic)",
    "seconds_per_epoch": "seconds per epoch",
    "seconds_to_95": "seconds to 95 % of final validation accuracy",
}


@dataclass(frozen=True)
class CellRun:
    """One cell of a sweep and what the records hold for it."""

    arm: str
    seed: int
    run_id: int | None
    status: str | None                # None: no run yet
    summary: Mapping[str, Any] | None
    class_acc: Sequence[float] | None = None
    train_counts: Sequence[int] | None = None
    class_names: Sequence[str] | None = None


@dataclass(frozen=True)
class ArmRow:
    arm: str
    cells: int
    finished: int
    statuses: dict[str, int]
    values: dict[str, list[float]] = field(default_factory=dict)   # metric -> one per seed

    def stat(self, metric: str) -> tuple[float, float] | None:
        return mean_std(self.values.get(metric, []))


def mean_std(xs: Sequence[float]) -> tuple[float, float] | None:
    """(mean, sample standard deviation); std 0 for one value; None for none."""
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt_mean_std(ms: tuple[float, float] | None, scale: float = 100.0, digits: int = 1,
                 n: int = 2) -> str:
    """``83.4 ± 1.2``; one value (``n == 1``) has no spread to show: ``83.4``."""
    if ms is None:
        return "—"
    m, s = ms
    if n < 2:
        return f"{scale * m:.{digits}f}"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f}"


def _metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    final = summary.get("final") or {}
    best = summary.get("best") or {}
    out = {k: final[k] for k in ("acc", "many", "medium", "few", "val_acc")
           if isinstance(final.get(k), (int, float))}
    if isinstance(best.get("acc"), (int, float)):
        out["best_acc"] = best["acc"]
    for key in ("seconds_per_epoch", "seconds_to_95"):
        if isinstance(summary.get(key), (int, float)):
            out[key] = summary[key]
    return out


def arm_rows(cells: Iterable[CellRun]) -> list[ArmRow]:
    """One row per arm, in the order arms first appear; only completed runs count."""
    groups: dict[str, list[CellRun]] = {}
    for c in cells:
        groups.setdefault(c.arm, []).append(c)
    rows = []
    for arm, members in groups.items():
        statuses: dict[str, int] = {}
        values: dict[str, list[float]] = {}
        finished = 0
        for c in members:
            key = c.status or "not queued"
            statuses[key] = statuses.get(key, 0) + 1
            if c.status == "completed" and c.summary:
                finished += 1
                for k, v in _metrics(c.summary).items():
                    values.setdefault(k, []).append(float(v))
        rows.append(ArmRow(arm=arm, cells=len(members), finished=finished, statuses=statuses,
                           values=values))
    return rows


def sort_rows(rows: list[ArmRow], column: str | None) -> list[ArmRow]:
    """Sort by a metric column (best first, missing last) or by arm name."""
    if column is None:
        return rows
    if column == "arm":
        return sorted(rows, key=lambda r: r.arm)
    if column == "done":
        return sorted(rows, key=lambda r: -r.finished)
    if column not in METRICS:
        raise ValueError(f"--sort: must be one of {' | '.join(COLUMNS)} (got {column!r})")
    reverse_sign = 1.0 if column.startswith("seconds") else -1.0

    def key(r: ArmRow) -> tuple[int, float]:
        ms = r.stat(column)
        return (1, 0.0) if ms is None else (0, reverse_sign * ms[0])

    return sorted(rows, key=key)


def per_class_mean(cells: Iterable[CellRun], arm: str) -> list[dict[str, Any]]:
    """An arm's per-class test accuracy, mean ± std over its completed seeds, ordered head to
    tail by training count."""
    members = [c for c in cells if c.arm == arm and c.status == "completed" and c.class_acc]
    if not members:
        return []
    counts = list(members[0].train_counts or [0] * len(members[0].class_acc or []))
    names = list(members[0].class_names or [str(i) for i in range(len(counts))])
    rows: list[dict[str, Any]] = []
    for k in range(len(counts)):
        ms = mean_std([float(c.class_acc[k]) for c in members
                       if c.class_acc is not None and k < len(c.class_acc)])
        rows.append({"class": k, "name": names[k] if k < len(names) else str(k),
                     "train": counts[k], "mean": None if ms is None else ms[0],
                     "std": None if ms is None else ms[1], "seeds": len(members)})
    rows.sort(key=lambda r: (-r["train"], r["class"]))
    return rows
