"""Charts on textual-plotext: each widget owns its own plotext figure (``self.plt``), keeps
bounded series, and draws them downsampled to its width only when it renders."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.app import RenderResult
from textual_plotext import PlotextPlot

from mfm.text import visible
from mfm_tui.widgets.series import BoundedSeries, downsample

__all__ = ["PALETTE", "GLYPHS", "nice_step", "Chart", "LineChart", "ClassChart", "DiffChart",
           "CountsChart", "order_by_count",
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


PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 130, 200), (230, 25, 75), (60, 180, 75), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (255, 225, 25))
"""Series colours, in order (textual-plotext's sequence, reordered so the first two differ
most)."""

GLYPHS = ("●", "■", "▲", "◆", "+", "x", "o", "*")
"""Each series' point marker, in order: series are told apart without colour too."""

GREY = (128, 128, 128)


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about ``ticks`` steps."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * power:
            return float(m * power)
    return float(10 * power)


def _tick_label(v: float) -> str:
    return f"{v:+g}" if v else "0"


def every(n: int, room: int) -> int:
    """Mark every k-th point so that about ``room`` markers are drawn."""
    return max(1, math.ceil(n / max(1, room)))


class Chart(PlotextPlot):
    """A plot that redraws itself from its data on render (resize included). The title and
    the legend are drawn above the plot, never over the data: on one line when they fit, else
    the legend on a second line. Each series has a colour and a glyph (``GLYPHS``)."""

    DEFAULT_CSS = """
    Chart { height: 1fr; min-height: 5; }
    """

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(id=id, classes=classes)
        self.title_text = title
        self._heading = title
        self._legend: list[tuple[str, str, tuple[int, int, int]]] = []
        self.note = ""  # after the title, e.g. "1 of 2, ] next" (set by ChartStack)

    def render(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        width = max(10, self.size.width)
        height = max(3, self.size.height)
        self._width = width
        self._legend = []
        self._heading = self.title_text
        self.draw(width, height)
        if self.note:
            self._heading = f"{self._heading} ({self.note})"
        head = self._head(width)
        rows = max(2, height - len(head))
        plt.plotsize(width, rows)
        plt._set_size(width, rows)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        out = Text()
        for line in head:
            out.append_text(line)
            out.append("\n")
        out.append_text(Text.from_ansi(plt.build()))
        return out

    def _head(self, width: int) -> list[Text]:
        """The title and the legend, centred, as one line when both fit, else two (or the
        legend's entries cut at the width)."""
        title = visible(self._heading)
        legend = Text()
        for i, (glyph, name, rgb) in enumerate(self._legend):
            if i:
                legend.append("  ")
            legend.append(glyph, style=f"bold rgb({rgb[0]},{rgb[1]},{rgb[2]})")
            legend.append(" " + visible(name))
        if not self._legend:
            return [_centre(Text(_cut(title, width), style="bold"), width)]
        one = Text(_cut(title, width), style="bold")
        if len(title) + 3 + legend.cell_len <= width:
            one.append(" · ")
            one.append_text(legend)
            return [_centre(one, width)]
        legend.truncate(width, overflow="ellipsis")
        return [_centre(one, width), _centre(legend, width)]

    def add_legend(self, glyph: str, name: str, rgb: tuple[int, int, int]) -> None:
        self._legend.append((glyph, name, rgb))

    def title(self, text: str) -> None:
        """The heading above the plot (control characters shown as escapes, cut to the
        width when drawn)."""
        self._heading = text

    def series_line(self, i: int, name: str, xs: Sequence[float], ys: Sequence[float], *,
                    width: int, yside: str = "left", line: bool = True) -> None:
        """Series ``i``: a line in its colour with its glyph on its points (every point when
        they are few, so a two-epoch run is a segment between two marks; every k-th
        otherwise), and an entry in the legend."""
        plt = self.plt
        rgb = PALETTE[i % len(PALETTE)]
        glyph = GLYPHS[i % len(GLYPHS)]
        if line and len(xs) > 1:
            plt.plot(xs, ys, marker="braille", color=rgb, yside=yside)
        k = every(len(xs), max(2, width // 6))
        px, py = list(xs[::k]), list(ys[::k])
        if len(xs) and (xs[-1], ys[-1]) != (px[-1], py[-1]):
            px.append(xs[-1])
            py.append(ys[-1])
        plt.scatter(px, py, marker=glyph, color=rgb, yside=yside)
        self.add_legend(f"─{glyph}" if line else glyph, name, rgb)

    def draw(self, width: int, height: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def _centre(text: Text, width: int) -> Text:
    pad = max(0, (width - text.cell_len) // 2)
    return Text(" " * pad) + text


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
        xmax = 0.0
        for i, (name, s) in enumerate(self.series.items()):
            xs, ys = _finite(*downsample(s.xs, s.ys, max(8, width - 12)))
            if not xs:
                continue
            self.series_line(i, name, xs, ys, width=width)
            xmax = max(xmax, xs[-1])
            drawn = True
        if not drawn:
            self.title(f"{self.title_text} (no points yet)")
            return
        if self.xlabel_text and height >= 10:
            plt.xlabel(self.xlabel_text)
        if self.xlabel_text == "epoch" and xmax <= 12:  # whole epochs, not 1.5
            plt.xticks(list(range(1, int(xmax) + 1)))
        if self.y_range is not None:
            plt.ylim(*self.y_range)
            lo, hi = self.y_range
            step = nice_step(hi - lo, 4 if height >= 12 else 2)
            plt.yticks([lo + step * j for j in range(int((hi - lo) / step) + 1)])


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
        for i, (name, acc) in enumerate(usable.items()):
            ys = [100 * acc[c] for c in order]
            if len(usable) == 1:
                rgb = PALETTE[0]
                plt.bar(xs, ys, width=0.6 if n <= 20 else 1.0, color=rgb)
                self.add_legend("█", f"{name} accuracy % (left axis)", rgb)
            else:
                self.series_line(i, f"{name} acc %", xs, ys, width=width)
        grey = GREY
        plt.plot(xs, counts, yside="right", marker="braille", color=grey)
        self.add_legend("┈", "train images (right axis)", grey)
        ticks, labels = count_ticks(counts, width)
        plt.xticks(ticks, labels)
        if height >= 10:
            plt.xlabel("classes, head to tail (x label = training images)")
        plt.ylim(0, 100)
        plt.yticks([0, 25, 50, 75, 100] if height >= 12 else [0, 50, 100])
        top = max(counts) or 1
        step = nice_step(top, 4 if height >= 12 else 2)
        plt.ylim(0, step * math.ceil(top / step), yside="right")  # type: ignore[arg-type]
        plt.yticks([step * j for j in range(math.ceil(top / step) + 1)],
                   yside="right")  # type: ignore[arg-type]


class DiffChart(Chart):
    """Per-class accuracy difference (percentage points) of run B minus run A, head to tail:
    bars above a zero line where B is better, below where A is."""

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None):
        super().__init__(title, id=id, classes=classes)
        self.train: list[int] = []
        self.diff: list[float] = []
        self.names = ("A", "B")

    def set_data(self, train: Sequence[int], a: Sequence[float] | None,
                 b: Sequence[float] | None, title: str | None = None,
                 names: tuple[str, str] | None = None) -> None:
        self.train = list(train)
        if title:
            self.title_text = title
        if names:
            self.names = names
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
        values = [self.diff[c] for c in order]
        xs = list(range(1, len(order) + 1))
        bar_width = 0.6 if len(xs) <= 20 else 1.0
        up = [(x, v) for x, v in zip(xs, values) if v > 0]
        down = [(x, v) for x, v in zip(xs, values) if v < 0]
        a, b = self.names
        if up:
            plt.bar([x for x, _ in up], [v for _, v in up], width=bar_width, color=PALETTE[2])
        if down:
            plt.bar([x for x, _ in down], [v for _, v in down], width=bar_width,
                    color=PALETTE[1])
        plt.hline(0, color=GREY)
        self.add_legend("█", f"{b} better", PALETTE[2])
        self.add_legend("█", f"{a} better", PALETTE[1])
        hi = max([0.0, *values])
        lo = min([0.0, *values])
        step = nice_step((hi - lo) or 1.0, 2 if height < 12 else 4)
        top, bottom = math.ceil(hi / step), math.floor(lo / step)
        if top == bottom:
            top += 1
        ticks = [step * j for j in range(bottom, top + 1)]
        plt.ylim(step * bottom, step * top)
        plt.yticks(ticks, [_tick_label(t) for t in ticks])
        ticks_x, labels = count_ticks(counts, width)
        plt.xticks(ticks_x, labels)
        if height >= 10:
            plt.xlabel("classes, head to tail (x label = training images); points of accuracy")


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
        # the legend goes in the heading, above the plot (plotext's own legend is drawn
        # over the top-left bars): each series in a fixed colour, named there
        if n <= 12:
            colours = [PALETTE[i % len(PALETTE)] for i in range(len(series) + 1)]
            # plotext 5 takes one colour per series; textual-plotext's stub says one colour
            plt.multiple_bar(xs, [train, *(v for _, v in series)],
                             color=colours)  # type: ignore[arg-type]
            for rgb, name in zip(colours, ["train", *(k for k, _ in series)]):
                self.add_legend("█", name, rgb)
        else:
            plt.bar(xs, train, width=1.0, color=PALETTE[0])
            self.add_legend("█", "train", PALETTE[0])
            for i, (key, values) in enumerate(series, 1):
                plt.plot(xs, values, marker="braille", color=PALETTE[i % len(PALETTE)])
                self.add_legend("─", key, PALETTE[i % len(PALETTE)])
        if height >= 10:
            plt.xlabel("class")
