"""Charts on textual-plotext: each widget owns its own plotext figure (``self.plt``), keeps
bounded series, and draws them downsampled to its width only when it renders."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from mfm.text import visible
from mfm_tui.widgets.series import BoundedSeries, downsample

__all__ = ["Chart", "LineChart", "ClassChart", "DiffChart", "CountsChart", "order_by_count",
           "count_ticks"]


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[list[float], list[float]]:
    keep = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(y) or math.isinf(y))]
    return [x for x, _ in keep], [y for _, y in keep]


def order_by_count(train: Sequence[int]) -> list[int]:
    """Class indices head to tail: by training count, largest first (ties by index)."""
    return sorted(range(len(train)), key=lambda c: (-train[c], c))


def count_ticks(counts: Sequence[int], width: int) -> tuple[list[float], list[str]]:
    """x positions 1..n labelled with their training count, as many as fit in ``width``."""
    n = len(counts)
    if n == 0:
        return [], []
    fit = max(2, width // 7)
    step = max(1, math.ceil(n / fit))
    ticks = list(range(1, n + 1, step))
    if ticks[-1] != n and n - ticks[-1] >= step / 2:
        ticks.append(n)
    return [float(t) for t in ticks], [str(counts[t - 1]) for t in ticks]


class Chart(PlotextPlot):
    """A plot that redraws itself from its data on render (resize included)."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 6; }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.title_text = title

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        width = max(10, self.size.width)
        self._width = width
        self.title(self.title_text)
        self.draw(width, max(4, self.size.height))
        return super().render()

    def title(self, text: str) -> None:
        """Set the plot title, cut to the width (plotext drops a title that does not fit).
        Control characters are shown as escapes: plotext's output is read as ANSI."""
        text = visible(text)
        room = max(4, getattr(self, "_width", 80) - 2)
        self.plt.title(text if len(text) <= room else text[: room - 1] + "…")

    def draw(self, width: int, height: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class LineChart(Chart):
    """Named line series over x (steps or epochs), each bounded to ``capacity`` points."""

    def __init__(self, title: str, *, xlabel: str = "", y_range: tuple[float, float] | None = None,
                 capacity: int = 2000, scale: float = 1.0, id: str | None = None,
                 classes: str | None = None):
        super().__init__(title, id=id, classes=classes)
        self.xlabel_text = xlabel
        self.y_range = y_range
        self.capacity = capacity
        self.scale = scale
        self.series: dict[str, BoundedSeries] = {}

    def add_points(self, name: str, points: Iterable[tuple[float, float]]) -> int:
        """Append new points to a series (created on first use); redraws if any were new."""
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = BoundedSeries(self.capacity)
        taken = s.extend((x, y * self.scale) for x, y in points)
        if taken:
            self.refresh()
        return taken

    def clear_series(self) -> None:
        self.series.clear()
        self.refresh()

    def draw(self, width: int, height: int) -> None:
        plt = self.plt
        drawn = False
        for name, s in self.series.items():
            xs, ys = _finite(*downsample(s.xs, s.ys, max(8, width - 12)))
            if not xs:
                continue
            plt.plot(xs, ys, label=visible(name), marker="braille")
            drawn = True
        if not drawn:
            self.title(f"{self.title_text} (no points yet)")
            return
        if self.xlabel_text:
            plt.xlabel(self.xlabel_text)
        if self.y_range is not None:
            plt.ylim(*self.y_range)


class ClassChart(Chart):
    """Per-class accuracy (%) head to tail by training count, the counts on the x axis and as
    a line on the right axis: the long-tail picture. One run: bars; several: lines."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(title, id=id, classes=classes)
        self.train: list[int] = []
        self.accs: dict[str, list[float]] = {}

    def set_data(self, train: Sequence[int], accs: dict[str, Sequence[float] | None]) -> None:
        self.train = list(train)
        self.accs = {k: list(v) for k, v in accs.items() if v is not None}
        self.refresh()

    def draw(self, width: int, height: int) -> None:
        plt = self.plt
        n = len(self.train)
        usable = {k: v for k, v in self.accs.items() if len(v) == n}
        if not n or not usable:
            self.title(f"{self.title_text} (no per-class accuracy yet)")
            return
        order = order_by_count(self.train)
        counts = [self.train[c] for c in order]
        xs = list(range(1, n + 1))
        for name, acc in usable.items():
            ys = [100 * acc[c] for c in order]
            if len(usable) == 1:
                plt.bar(xs, ys, label=f"{visible(name)} acc %", width=0.6 if n <= 20 else 1.0)
            else:
                plt.plot(xs, ys, label=f"{visible(name)} acc %", marker="braille")
        plt.plot(xs, counts, yside="right", label="train count", marker="dot")
        ticks, labels = count_ticks(counts, width)
        plt.xticks(ticks, labels)
        plt.xlabel("classes, head to tail (x label = training images)")
        plt.ylim(0, 100)


class DiffChart(Chart):
    """Per-class accuracy difference (percentage points) of run B minus run A, head to tail."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(title, id=id, classes=classes)
        self.train: list[int] = []
        self.diff: list[float] = []

    def set_data(self, train: Sequence[int], a: Sequence[float] | None,
                 b: Sequence[float] | None, title: str | None = None) -> None:
        self.train = list(train)
        if title:
            self.title_text = title
        if a is None or b is None or len(a) != len(b) or len(a) != len(self.train):
            self.diff = []
        else:
            self.diff = [100 * (y - x) for x, y in zip(a, b)]
        self.refresh()

    def draw(self, width: int, height: int) -> None:
        plt = self.plt
        if not self.diff:
            self.title(f"{self.title_text} (needs two runs with per-class accuracy)")
            return
        order = order_by_count(self.train)
        counts = [self.train[c] for c in order]
        xs = list(range(1, len(order) + 1))
        plt.bar(xs, [self.diff[c] for c in order], width=0.6 if len(xs) <= 20 else 1.0)
        ticks, labels = count_ticks(counts, width)
        plt.xticks(ticks, labels)
        plt.xlabel("classes, head to tail (x label = training images)")


class CountsChart(Chart):
    """Train / meta / (val) / test images per class of a dataset spec (class index order)."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(title, id=id, classes=classes)
        self.counts: dict[str, list[int]] | None = None

    def set_counts(self, counts: dict[str, list[int]] | None) -> None:
        self.counts = counts
        self.refresh()

    def draw(self, width: int, height: int) -> None:
        plt = self.plt
        if not self.counts or not self.counts.get("train"):
            self.title(f"{self.title_text} (no preview)")
            return
        train = self.counts["train"]
        n = len(train)
        xs = list(range(n))
        series = [("meta", self.counts.get("meta") or [0] * n)]
        if any(self.counts.get("val") or ()):  # data.val_per_class > 0
            series.append(("val", self.counts["val"]))
        series.append(("test", self.counts.get("test") or [0] * n))
        if n <= 12:
            plt.multiple_bar(xs, [train, *(v for _, v in series)],
                             labels=["train", *(k for k, _ in series)])
        else:
            plt.bar(xs, train, label="train", width=1.0)
            for key, values in series:
                plt.plot(xs, values, label=key, marker="braille")
        plt.xlabel("class")
