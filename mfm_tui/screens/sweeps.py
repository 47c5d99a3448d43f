"""Sweeps: every sweep with its progress, the chosen sweep's arm table (mean ± std over
seeds, live as runs finish), the per-class accuracy of one arm or two side by side, head to
tail, and the way to an arm's runs and to queueing a new sweep."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from mfm.sweeps.table import ArmRow, CellRun, arm_rows, per_class_mean, sort_rows
from mfm_tui.format import progress
from mfm_tui.literal import NAME_CELL, NAME_LABEL, NAME_TITLE, cut, literal
from mfm_tui.screens.base import BaseScreen, refill_list
from mfm_tui.sweep_text import arm_cells, arm_columns
from mfm_tui.widgets.charts import ClassChart
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.sweeps import SweepRecord
    from mfm.store.views import Fingerprint
    from mfm_tui.services import SweepsPoll

__all__ = ["SweepsScreen", "sweep_cells_text", "class_rows", "fitted_widths", "SWEEP_COLUMNS"]

TABS = ("arms", "classes", "chart")
SORTS: tuple[str | None, ...] = (None, "acc", "few", "medium", "many", "seconds_per_epoch",
                                 "arm")
SWEEP_COLUMNS = ("id", "name", "progress", "done", "running", "queued", "failed", "updated")
FAILED = ("failed", "cancelled", "lost")

PollArgs = tuple["int | None", "Fingerprint | None", frozenset[int]]
"""(the chosen sweep, its fingerprint at the last read, runs whose vectors are held)."""


def sweep_cells_text(r: SweepRecord, localtime: Any = time.localtime) -> tuple[str, ...]:
    """One row of the sweeps list: finished / running / queued / failed of its cells."""
    from mfm.store.records import ACTIVE, WAITING

    st = r.statuses or {}
    done = st.get("completed", 0)
    return (str(r.id), cut(r.name, NAME_CELL), progress(done, r.cells),
            f"{done}/{r.cells}", str(sum(st.get(k, 0) for k in ACTIVE)),
            str(sum(st.get(k, 0) for k in WAITING)), str(sum(st.get(k, 0) for k in FAILED)),
            time.strftime("%m-%d %H:%M", localtime(r.updated_at)))


def class_rows(series: dict[str, list[dict[str, Any]]]) -> list[tuple[str, ...]]:
    """Per-class rows head to tail: class, train count, each arm's mean ± std, and the
    second arm minus the first (points) for two arms."""
    arms = list(series)
    first = next((s for s in series.values() if s), [])
    by_class = {a: {r["class"]: r for r in s} for a, s in series.items()}
    out = []
    for r in first:
        row = [cut(r["name"], 12), str(r["train"])]
        means: list[float | None] = []
        for a in arms:
            x = by_class[a].get(r["class"])
            if x is None or x["mean"] is None:
                row.append("—")
                means.append(None)
            else:
                row.append(f"{100 * x['mean']:.1f} ± {100 * x['std']:.1f}"
                           if x["seeds"] > 1 else f"{100 * x['mean']:.1f}")
                means.append(x["mean"])
        if len(arms) == 2:
            first_mean, second_mean = means
            row.append("—" if first_mean is None or second_mean is None
                       else f"{100 * (second_mean - first_mean):+.1f}")
        out.append(tuple(row))
    return out


def fitted_widths(labels: Sequence[Text], rows: Sequence[Sequence[Text]]) -> list[int]:
    """Per column: the cells of its widest text, label or value (a number is never cut)."""
    return [max([label.cell_len, *(row[i].cell_len for row in rows if i < len(row))])
            for i, label in enumerate(labels)]


class SweepsScreen(BaseScreen[PollArgs, "SweepsPoll"]):
    BINDINGS = [
        Binding("n", "new_sweep", "New sweep"),
        Binding("o", "open_arm", "Arm's runs"),
        Binding("space", "mark", "Mark arm"),
        Binding("p", "per_class", "Per-class"),
        Binding("s", "sort", "Sort"),
        Binding("right_square_bracket", "tab(1)", "Next tab"),
        Binding("left_square_bracket", "tab(-1)", "Prev tab"),
        Binding("escape", "app.switch_mode('runs')", "Runs"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: list[SweepRecord] = []
        self.sweep_rows: list[tuple[str, tuple[str, ...]]] = []
        self.selected: int | None = None
        self.fingerprint: Fingerprint | None = None
        self.cells: list[CellRun] = []
        self.class_acc: dict[int, list[float]] = {}
        self.rows: list[ArmRow] = []
        self.marked: list[str] = []
        self.sort_name: str | None = None
        self.details = 0      # sweep details applied (tests wait on it)
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(" Sweeps · reading the records…", id="sw-title", classes="screen-title",
                     markup=False)
        sweeps: DataTable[Any] = DataTable(id="sweep-list", cursor_type="row", zebra_stripes=True)
        sweeps.add_columns(*SWEEP_COLUMNS)
        yield sweeps
        with TabbedContent(id="sw-tabs"):
            with TabPane("Arms", id="arms"):
                yield DataTable(id="arm-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Per-class", id="classes"):
                yield Static("", id="class-title", markup=False, classes="hint")
                yield DataTable(id="class-table", cursor_type="row", zebra_stripes=True)
            with TabPane("Per-class chart", id="chart"):
                yield ClassChart("per-class accuracy", id="sw-class-chart")
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        self.query_one("#sweep-list", DataTable).focus()

    # -- polling ------------------------------------------------------------------------------

    def poll_args(self) -> PollArgs:
        have = frozenset(rid for rid in self.class_acc)
        return self.selected, self.fingerprint, have

    def fetch(self, args: PollArgs) -> SweepsPoll:
        sweep_id, known, have = args
        return self.services.poll_sweeps(sweep_id, known, have)

    def apply(self, poll: SweepsPoll) -> None:
        self.sweeps = poll.sweeps
        self.loaded = True
        rows = [(str(r.id), sweep_cells_text(r, self.services.localtime)) for r in poll.sweeps]
        if rows != self.sweep_rows:
            self.sweep_rows = rows
            refill_list(self.query_one("#sweep-list", DataTable), rows,
                        follow=None if self.selected is None else str(self.selected))
        ids = [r.id for r in poll.sweeps]
        if poll.gone or (self.selected is not None and self.selected not in ids):
            self._choose(ids[0] if ids else None)
        elif self.selected is None and ids:
            self._choose(self._cursor_sweep() or ids[0])
        detail = poll.detail
        if detail is not None and detail.sweep_id == self.selected:
            self.fingerprint = detail.fingerprint
            self.cells = detail.cells
            self.class_acc.update(detail.class_acc)
            self.details += 1
            self.refresh_arms()
            self.refresh_classes()
        elif self.selected is not None and self.fingerprint is None:
            self.call_later(self.poll_now)  # the chosen sweep changed while this poll ran
        self._title()

    # -- the sweeps list ----------------------------------------------------------------------

    def _cursor_sweep(self) -> int | None:
        table = self.query_one("#sweep-list", DataTable)
        if not table.row_count or not 0 <= table.cursor_row < table.row_count:
            return None
        return int(table.ordered_rows[table.cursor_row].key.value or 0) or None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "sweep-list":
            current = self._cursor_sweep()
            if current is not None and current != self.selected:
                self._choose(current)
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "sweep-list":
            self.query_one("#sw-tabs", TabbedContent).active = "arms"
            self.query_one("#arm-table", DataTable).focus()
        elif event.data_table.id == "arm-table":
            self.action_open_arm()

    def _choose(self, sweep_id: int | None) -> None:
        """Show another sweep: its table is read at once."""
        if sweep_id == self.selected:
            return
        self.selected = sweep_id
        self.fingerprint = None
        self.cells = []
        self.rows = []
        self.marked = []
        self.refresh_arms()
        self.refresh_classes()
        self._title()
        if sweep_id is not None and self._poll_started:
            self.poll_now()

    def _title(self) -> None:
        if not self.loaded:
            return
        rec = self.current_sweep()
        text = f" Sweeps ({len(self.sweeps)})"
        if rec is not None:
            text += f" · {rec.id} {cut(rec.name, NAME_TITLE)}"
            text += " · mean ± std over seeds, final epoch, test split"
            if self.sort_name:
                text += f" · sort {self.sort_name}"
        elif not self.sweeps:
            text += " · none yet: n queues one (a file, or a spec + config + axes)"
        self.query_one("#sw-title", Static).update(text)

    def current_sweep(self) -> SweepRecord | None:
        return next((r for r in self.sweeps if r.id == self.selected), None)

    # -- the arm table ------------------------------------------------------------------------

    def refresh_arms(self) -> None:
        table: DataTable[Any] = self.query_one("#arm-table", DataTable)
        self.rows = sort_rows(arm_rows(self.cells), self.sort_name)
        columns = arm_columns(self.rows)
        rows = [(r.arm, arm_cells(r, columns, marked=r.arm in self.marked)) for r in self.rows]
        # each column as wide as its widest text, set before the rows go in (see
        # refresh_classes): "100.0 ± 0.0" is never drawn cut
        widths = fitted_widths([literal(label) for _, label in columns],
                               [[literal(c) for c in cells] for _, cells in rows])
        want = tuple((label, width) for (_, label), width in zip(columns, widths))
        if tuple((str(c.label), c.width) for c in table.columns.values()) != want:
            current = self.current_arm()
            table.clear(columns=True)
            for (key, label), width in zip(columns, widths):
                table.add_column(literal(label), key=key, width=width)
            refill_list(table, rows, follow=current)
        else:
            refill_list(table, rows)
        self.refresh_bindings()

    def current_arm(self) -> str | None:
        table = self.query_one("#arm-table", DataTable)
        if not self.rows or not 0 <= table.cursor_row < table.row_count:
            return None
        return str(table.ordered_rows[table.cursor_row].key.value)

    def shown_arms(self) -> list[str]:
        """The marked arms (one or two), else the arm under the cursor."""
        if self.marked:
            return list(self.marked)
        arm = self.current_arm()
        return [arm] if arm is not None else []

    # -- per class ----------------------------------------------------------------------------

    def class_series(self, arms: list[str]) -> dict[str, list[dict[str, Any]]]:
        cells = [dataclasses.replace(c, class_acc=self.class_acc.get(c.run_id))
                 if c.run_id is not None else c for c in self.cells]
        return {a: per_class_mean(cells, a) for a in arms}

    def refresh_classes(self) -> None:
        arms = self.shown_arms() if self.is_mounted else []
        series = self.class_series(arms)
        table: DataTable[Any] = self.query_one("#class-table", DataTable)
        table.clear(columns=True)
        title = self.query_one("#class-title", Static)
        chart = self.query_one("#sw-class-chart", ClassChart)
        if not arms or not any(series.values()):
            what = " and ".join(cut(a, NAME_LABEL) for a in arms) or "the arm"
            title.update(f" no completed run with per-class accuracy in {what} yet"
                         if arms else " choose a sweep and an arm (space marks two)")
            chart.title_text = "per-class accuracy"
            chart.set_data([], {})
            return
        seeds = {a: (s[0]["seeds"] if s else 0) for a, s in series.items()}
        title.update(" per-class test accuracy %, mean ± std over seeds, head to tail: "
                     + " vs ".join(f"{cut(a, NAME_LABEL)} ({seeds[a]} seed"
                                   f"{'s' if seeds[a] != 1 else ''})" for a in arms))
        labels = [literal("class"), literal("train"), *(literal(a, 24) for a in arms)]
        keys = ["class", "train", *(f"arm{i}" for i in range(len(arms)))]
        if len(arms) == 2:
            labels.append(literal("2nd − 1st"))
            keys.append("diff")
        cells = [[literal(c) for c in row] for row in class_rows(series)]
        # each column as wide as its widest text ("100.0 ± 12.5", "98.0", the arm's name),
        # set before the rows go in: a DataTable that measures its rows later keeps the
        # cells it drew in between cut ("10" for 100.0) until they change
        for label, key, width in zip(labels, keys, fitted_widths(labels, cells)):
            table.add_column(label, key=key, width=width)
        for row_cells in cells:
            table.add_row(*row_cells)
        first = next(s for s in series.values() if s)
        n = max(r["class"] for r in first) + 1
        train = [0] * n
        for r in first:
            train[r["class"]] = r["train"]
        accs: dict[str, Sequence[float] | None] = {}
        for a, s in series.items():
            if not s:
                continue
            vec = [0.0] * n
            for r in s:
                m = r["mean"]
                vec[r["class"]] = 0.0 if m is None or not math.isfinite(m) else m
            accs[cut(a, NAME_LABEL)] = vec
        chart.title_text = ("per-class accuracy, mean over seeds: "
                            + " vs ".join(cut(a, NAME_LABEL) for a in arms))
        chart.set_data(train, accs)

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("open_arm", "mark", "per_class"):
            return (self.is_mounted and self.current_arm() is not None) or None
        return True

    def action_tab(self, step: int) -> None:
        tabs = self.query_one("#sw-tabs", TabbedContent)
        i = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(i + step) % len(TABS)]

    def action_sort(self) -> None:
        self.sort_name = SORTS[(SORTS.index(self.sort_name) + 1) % len(SORTS)]
        self.refresh_arms()
        self._title()

    def action_mark(self) -> None:
        arm = self.current_arm()
        if arm is None:
            return
        if arm in self.marked:
            self.marked.remove(arm)
        elif len(self.marked) >= 2:
            self.notify("two arms side by side at most: unmark one first (space)",
                        severity="warning")
            return
        else:
            self.marked.append(arm)
        self.refresh_arms()
        self.refresh_classes()

    def action_per_class(self) -> None:
        self.refresh_classes()
        self.query_one("#sw-tabs", TabbedContent).active = "classes"

    def on_tabbed_content_tab_activated(self, _: TabbedContent.TabActivated) -> None:
        self.refresh_classes()

    def action_open_arm(self) -> None:
        arm, rec = self.current_arm(), self.current_sweep()
        if arm is not None and rec is not None:
            self.host.open_arm_runs(rec.id, rec.name, arm)

    def action_new_sweep(self) -> None:
        def queued(sweep_id: int) -> None:
            self._choose(sweep_id)
            self.poll_now()

        self.host.open_new_sweep(queued)
