"""Bounded metric series and downsampling to a chart's width (pure Python, no Textual).

A live run logs thousands of points; a chart is a hundred columns wide. A ``BoundedSeries``
keeps at most ``capacity`` points: when full, neighbouring points are merged pairwise (mean of
x and y), halving it, so memory stays bounded and the curve's shape is kept. ``downsample``
then reduces what is kept to about one point per column at draw time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["BoundedSeries", "downsample"]


class BoundedSeries:
    """(x, y) points in increasing x, at most ``capacity`` of them.

    Every kept point is the mean of ``stride`` consecutive raw points. When the series
    overflows, neighbours are merged pairwise and the stride doubles, so all kept points
    always weigh the same and the curve keeps its start, its end and its shape.
    """

    def __init__(self, capacity: int = 2000):
        if capacity < 4:
            raise ValueError(f"capacity must be >= 4, not {capacity}")
        self.capacity = capacity
        self.stride = 1
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._pending: list[tuple[float, float]] = []  # raw points of the unfinished bucket
        self.last_x: float | None = None  # the last x ever added

    def __len__(self) -> int:
        return len(self._xs) + (1 if self._pending else 0)

    @property
    def xs(self) -> list[float]:
        return self._xs + ([_mean([x for x, _ in self._pending])] if self._pending else [])

    @property
    def ys(self) -> list[float]:
        return self._ys + ([_mean([y for _, y in self._pending])] if self._pending else [])

    def extend(self, points: Iterable[tuple[float, float]]) -> int:
        """Append points with x beyond the last one (others are ignored); returns how many
        were taken."""
        taken = 0
        for x, y in points:
            if self.last_x is not None and x <= self.last_x:
                continue
            self.last_x = float(x)
            taken += 1
            self._pending.append((float(x), float(y)))
            if len(self._pending) == self.stride:
                self._xs.append(_mean([p[0] for p in self._pending]))
                self._ys.append(_mean([p[1] for p in self._pending]))
                self._pending = []
                if len(self._xs) >= self.capacity:
                    self._halve()
        return taken

    def clear(self) -> None:
        self.__init__(self.capacity)  # type: ignore[misc]

    def _halve(self) -> None:
        xs, ys = self._xs, self._ys
        n = len(xs) - len(xs) % 2
        self._xs = [(xs[i] + xs[i + 1]) / 2 for i in range(0, n, 2)]
        self._ys = [_mean2(ys[i], ys[i + 1]) for i in range(0, n, 2)]
        if n < len(xs):  # an odd point left: it starts the next bucket
            self._pending = [(xs[-1], ys[-1])] * self.stride
        self.stride *= 2


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _mean2(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return (a + b) / 2


def downsample(xs: Sequence[float], ys: Sequence[float],
               n: int) -> tuple[list[float], list[float]]:
    """At most ``n`` points: the mean of each of ``n`` equal runs of points (NaNs skipped).
    The first and last x are kept, so the axis does not shrink."""
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    size = len(xs)
    if size <= n:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(n):
        lo = b * size // n
        hi = max(lo + 1, (b + 1) * size // n)
        chunk = [v for v in ys[lo:hi] if not math.isnan(v)]
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(chunk) / len(chunk) if chunk else math.nan)
    out_x[0], out_x[-1] = float(xs[0]), float(xs[-1])
    return out_x, out_y
