"""Charts one under the other that never get squeezed: while each can have ``MIN_ROWS`` rows
they share the height; on a short terminal each takes the whole height (one chart in view, a
page each) and ``turn`` steps from page to page, so a tab's ``]`` / ``[`` reach every chart.

Its pages are its charts, or the rows of a single ``Grid`` it holds (the compare screen's
per-class charts side by side)."""

from __future__ import annotations

from textual.containers import Grid, VerticalScroll
from textual.events import Resize
from textual.widget import Widget

from mfm_tui.widgets.charts import Chart

__all__ = ["ChartStack", "MIN_ROWS"]

MIN_ROWS = 12
"""The fewest rows a chart is drawn with while the stack has them (a short terminal pages)."""


class ChartStack(VerticalScroll, can_focus=False):
    DEFAULT_CSS = """
    ChartStack { height: 1fr; scrollbar-size-vertical: 1; }
    ChartStack > Chart { height: 1fr; }
    ChartStack > Grid { height: 1fr; }
    """

    def __init__(self, *children: Widget, id: str | None = None, classes: str | None = None):
        super().__init__(*children, id=id, classes=classes)
        self.paged = False

    def _grid(self) -> Grid | None:
        kids = list(self.children)
        return kids[0] if len(kids) == 1 and isinstance(kids[0], Grid) else None

    def pages(self) -> int:
        """How many rows of charts it holds."""
        grid = self._grid()
        if grid is not None:
            return max(1, int(grid.styles.grid_size_rows or 1))
        return len([c for c in self.children if isinstance(c, Chart) and c.display])

    def on_resize(self, _: Resize) -> None:
        self.fit()

    def fit(self) -> None:
        """Share the height while every row of charts gets ``MIN_ROWS``; else one row of
        charts per page, each the whole height. Call it when the pages change."""
        height = self.size.height
        if not height:
            return
        pages = self.pages()
        self.paged = pages > 1 and height < MIN_ROWS * pages
        grid = self._grid()
        if grid is not None:
            grid.styles.height = height * pages if self.paged else "1fr"
            return
        charts = [c for c in self.children if isinstance(c, Chart) and c.display]
        for i, chart in enumerate(charts):
            chart.styles.height = height if self.paged else "1fr"
            note = ""
            if self.paged:
                note = f"{i + 1} of {pages}, " + ("] next" if i + 1 < pages else "[ back")
            if note != chart.note:
                chart.note = note
                chart.refresh()

    def page(self) -> int:
        """The page in view (0 when not paged)."""
        height = self.size.height
        if not self.paged or not height:
            return 0
        return min(self.pages() - 1, max(0, round(self.scroll_y / height)))

    def turn(self, step: int) -> bool:
        """Show the next (``step`` 1) or previous (-1) page; False when there is none (not
        paged, or at the end): the caller moves to another tab instead."""
        if not self.paged:
            return False
        target = self.page() + step
        if not 0 <= target < self.pages():
            return False
        self.scroll_to(y=target * self.size.height, animate=False)
        return True
