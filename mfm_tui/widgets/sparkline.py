"""A one-line sparkline as text (``▁▂▄▆█``), for a table cell: pure Python, no Textual.

The values are downsampled to the width (``mfm_tui.widgets.series.downsample``: the mean of
equal runs of points) and scaled between their own minimum and maximum, so the line shows
the trend of what it was given, not its level. A NaN (or a bucket of them) is a gap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mfm_tui.widgets.series import downsample

__all__ = ["BARS", "sparkline"]

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int) -> str:
    """At most ``width`` characters, one per (downsampled) value; "" when there is none.
    A flat series is drawn at mid height."""
    if width < 1 or not values:
        return ""
    _, ys = downsample(range(len(values)), values, width)
    finite = [y for y in ys if not math.isnan(y)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    top = len(BARS) - 1
    out = []
    for y in ys:
        if math.isnan(y):
            out.append(" ")
        elif hi - lo <= 1e-12 * max(1.0, abs(hi)):
            out.append(BARS[top // 2])
        else:
            out.append(BARS[round(top * (y - lo) / (hi - lo))])
    return "".join(out)
