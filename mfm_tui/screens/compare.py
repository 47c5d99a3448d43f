"""Compare 2-6 runs: accuracy curves overlaid, per-class accuracy against class frequency side
by side, per-class differences of a pair, and a summary table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from mfm_tui.format import data_text, epoch_text, flatten, pct
from mfm_tui.literal import NAME_CELL, NAME_LABEL, cut, literal_cells, shown
from mfm_tui.screens.base import BaseScreen
from mfm_tui.widgets.chart_stack import ChartStack
from mfm_tui.widgets.charts import ClassChart, DiffChart, LineChart
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm_tui.services import RunSeries

__all__ = ["CompareScreen", "summary_rows"]

TABS = ("curves", "classes", "diff", "summary", "config")
SUMMARY_COLUMNS = ("id", "name", "method", "data", "status", "ep", "acc%", "many", "med",
                   "few", "best%")


def label(run: RunRecord) -> str:
    """How a run is named in a legend or a chart title: its id and its name, literal, cut."""
    return f"{run.id} {cut(run.name, NAME_LABEL)}" if run.name else f"run {run.id}"


SUMMARY_FIELDS = ("name", "method", "data", "status", "ep", "acc%", "many", "med", "few",
                  "best%")


def summary_by_field(runs: list[RunRecord]) -> list[tuple[str, ...]]:
    """The summary turned on its side: one row per field, one column per run (readable at
    80 columns for up to six runs)."""
    rows = summary_rows(runs)
    return [(field, *(cut(row[i + 1], NAME_LABEL) for row in rows))
            for i, field in enumerate(SUMMARY_FIELDS)]


def config_diff(runs: list[RunRecord]) -> list[tuple[str, ...]]:
    """The resolved config keys whose values differ between the runs: (key, value per run);
    a key a run does not have shows as —."""
    flat = [flatten(r.config or {}) for r in runs]
    keys = sorted({k for f in flat for k in f})
    out = []
    for key in keys:
        values = [f.get(key, None) for f in flat]
        if len({repr(v) for v in values}) > 1:
            out.append((shown(key), *("—" if v is None else cut(repr(v), 24) for v in values)))
    return out


def summary_rows(runs: list[RunRecord]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in runs:
        final = (r.summary or {}).get("final") or {}
        best = (r.summary or {}).get("best") or {}

        def last(key: str, r: RunRecord = r, final: dict[str, Any] = final) -> float | None:
            return r.latest.get(key, final.get(key))

        rows.append((str(r.id), cut(r.name or "", NAME_CELL), shown(r.method),
                     data_text(r.config), r.status,
                     epoch_text(r), pct(last("acc")), pct(last("many")), pct(last("medium")),
                     pct(last("few")), pct(best.get("acc"))))
    return rows


CompareCursors = tuple[dict[int, int | None], dict[int, int | None]]
"""(run id -> last epoch read, run id -> epoch of the per-class vector shown)."""


class CompareScreen(BaseScreen[CompareCursors, "dict[int, RunSeries]"]):
    HELP_TITLE = "Compare"
    POLL_INTERVAL = 2.0
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("right_square_bracket", "tab(1)", "Next tab"),
        Binding("left_square_bracket", "tab(-1)", "Prev tab"),
        Binding("p", "pair", "Next pair"),
    ]

    def __init__(self, run_ids: list[int]):
        super().__init__()
        self.run_ids = list(run_ids)
        self.runs: dict[int, RunRecord] = {}
        self.after_epoch: dict[int, int | None] = {rid: None for rid in self.run_ids}
        self.class_acc: dict[int, list[float] | None] = {}
        self.pair = (0, 1)

    def compose(self) -> ComposeResult:
        yield Static(f" Compare runs {', '.join(map(str, self.run_ids))}",
                     classes="screen-title", markup=False, id="cmp-title")
        with TabbedContent(id="tabs"):
            with TabPane("Curves", id="curves"), ChartStack(id="cmp-curves"):
                yield LineChart("test accuracy % per epoch", xlabel="epoch", scale=100.0,
                                y_range=(0, 100), id="cmp-acc")
                yield LineChart("train loss per epoch", xlabel="epoch", id="cmp-loss")
            with TabPane("Per-class", id="classes"), ChartStack(id="cmp-classes"):
                with Grid(id="cmp-grid"):
                    for rid in self.run_ids:
                        yield ClassChart(f"run {rid}", id=f"cmp-class-{rid}")
            with TabPane("Difference", id="diff"):
                yield DiffChart("per-class accuracy difference", id="cmp-diff")
            with TabPane("Summary", id="summary"):
                table: DataTable[Any] = DataTable(id="cmp-table", cursor_type="row")
                yield table
            with TabPane("Config diff", id="config"):
                yield Static("", id="cmp-config-note", classes="hint", markup=False)
                diff_table: DataTable[Text] = DataTable(id="cmp-config", cursor_type="row")
                yield diff_table
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        for table_id in ("#cmp-table", "#cmp-config"):
            table = self.query_one(table_id, DataTable)
            table.add_column("", key="field")
            for rid in self.run_ids:
                table.add_column(f"run {rid}", key=str(rid))
        self._grid()

    def on_resize(self) -> None:
        self._grid()

    def _grid(self) -> None:
        """Per-class charts side by side as far as each keeps 40 columns, then in rows."""
        grid = self.query_one("#cmp-grid", Grid)
        n = len(self.run_ids)
        cols = max(1, min(n, 3, self.app.size.width // 40))
        grid.styles.grid_size_columns = cols
        grid.styles.grid_size_rows = -(-n // cols)
        self.query_one("#cmp-classes", ChartStack).fit()  # a row of charts per page if short

    # -- polling ------------------------------------------------------------------------------

    def poll_args(self) -> CompareCursors:
        return dict(self.after_epoch), {rid: self._class_epoch(rid) for rid in self.run_ids}

    def _class_epoch(self, rid: int) -> int | None:
        run = self.runs.get(rid)
        return None if run is None or self.class_acc.get(rid) is None else run.epoch

    def fetch(self, args: CompareCursors) -> dict[int, RunSeries]:
        after, class_epochs = args
        return {rid: self.services.run_series(rid, after_epoch=after[rid], step_keys=(),
                                              class_epoch=class_epochs[rid], log_offset=-1)
                for rid in self.run_ids}

    def apply(self, data: dict[int, RunSeries]) -> None:
        acc = self.query_one("#cmp-acc", LineChart)
        for rid, series in data.items():
            run = self.runs[rid] = series.run
            points = series.epochs.get("acc")
            if points:
                acc.add_points(label(run), [(e + 1, v) for e, v in points])
            loss_points = series.epochs.get("train_loss")
            if loss_points:
                self.query_one("#cmp-loss", LineChart).add_points(
                    label(run), [(e + 1, v) for e, v in loss_points])
            last = [p[-1][0] for p in series.epochs.values() if p]
            if last:
                self.after_epoch[rid] = max(last)
            if series.class_acc is not None or rid not in self.class_acc:
                if series.class_acc is not None:
                    self.class_acc[rid] = series.class_acc
                else:
                    self.class_acc.setdefault(rid, None)
                chart = self.query_one(f"#cmp-class-{rid}", ClassChart)
                chart.title_text = (f"{label(run)} · {shown(run.method)} · "
                                    f"{data_text(run.config)}")
                chart.set_data((run.class_counts or {}).get("train", []),
                               {shown(run.method): self.class_acc.get(rid)})
        self._diff()
        runs = [self.runs[rid] for rid in self.run_ids if rid in self.runs]
        if len(runs) == len(self.run_ids):
            table = self.query_one("#cmp-table", DataTable)
            table.clear()
            table.add_rows([literal_cells(row) for row in summary_by_field(runs)])
            diff = config_diff(runs)
            table = self.query_one("#cmp-config", DataTable)
            table.clear()
            table.add_rows([literal_cells(row) for row in diff])
            self.query_one("#cmp-config-note", Static).update(
                f" {len(diff)} config keys differ (the others are equal)" if diff
                else " the resolved configs are equal")

    def _diff(self) -> None:
        i, j = self.pair
        a_id, b_id = self.run_ids[i], self.run_ids[j]
        a, b = self.runs.get(a_id), self.runs.get(b_id)
        if a is None or b is None:
            return
        train = (b.class_counts or {}).get("train", [])
        same = (a.class_counts or {}).get("train", []) == train
        title = f"per-class accuracy: run {b_id} minus run {a_id} (points)"
        if not same:
            title += " — different class counts: per class index"
        self.query_one("#cmp-diff", DiffChart).set_data(
            train, self.class_acc.get(a_id), self.class_acc.get(b_id), title=title,
            names=(f"run {a_id}", f"run {b_id}"))

    # -- actions ------------------------------------------------------------------------------

    def action_tab(self, step: int) -> None:
        """The next (previous) page of charts of a short terminal's tab, else the next tab."""
        tabs = self.query_one("#tabs", TabbedContent)
        stack = {"curves": "#cmp-curves", "classes": "#cmp-classes"}.get(tabs.active)
        if stack is not None and self.query_one(stack, ChartStack).turn(step):
            return
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(i + step) % len(TABS)]

    def action_pair(self) -> None:
        n = len(self.run_ids)
        pairs = [(i, j) for i in range(n) for j in range(n) if i < j]
        self.pair = pairs[(pairs.index(self.pair) + 1) % len(pairs)]
        self._diff()
        self.query_one("#tabs", TabbedContent).active = "diff"
