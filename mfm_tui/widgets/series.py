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
    """(x, y) points in increasing x, at most ``capacity`` of them."""

    def __init__(self, capacity: int = 2000):
        if capacity < 4:
            raise ValueError(f"capacity must be >= 4, not {capacity}")
        self.capacity = capacity
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.last_x: float | None = None  # the last x ever added (kept across merges)

    def __len__(self) -> int:
        return len(self.xs)

    def extend(self, points: Iterable[tuple[float, float]]) -> int:
        """Append points with x beyond the last one (others are ignored); returns how many
        were taken."""
        taken = 0
        for x, y in points:
            if self.last_x is not None and x <= self.last_x:
                continue
            self.xs.append(float(x))
            self.ys.append(float(y))
            self.last_x = float(x)
            taken += 1
            if len(self.xs) > self.capacity:
                self._halve()
        return taken

    def clear(self) -> None:
        self.xs, self.ys, self.last_x = [], [], None

    def _halve(self) -> None:
        xs, ys = self.xs, self.ys
        n = len(xs) - 1  # keep the newest point as it is
        mx = [(xs[i] + xs[i + 1]) / 2 for i in range(0, n - 1, 2)]
        my = [_mean2(ys[i], ys[i + 1]) for i in range(0, n - 1, 2)]
        if n % 2:
            mx.append(xs[n - 1])
            my.append(ys[n - 1])
        self.xs = [*mx, xs[-1]]
        self.ys = [*my, ys[-1]]


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
