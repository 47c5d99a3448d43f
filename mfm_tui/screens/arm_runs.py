"""One arm of a sweep: its cells (one per seed) and their runs, live; a run opens on enter,
and the arm's runs can be compared."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from mfm_tui.actions import MAX_COMPARE
from mfm_tui.format import RUN_COLUMNS, run_cells
from mfm_tui.literal import NAME_TITLE, cut
from mfm_tui.screens.base import BaseScreen, refill_list
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import RunRecord

__all__ = ["ArmRunsScreen", "ARM_RUN_COLUMNS"]

# the runs table's columns, with the seed first and without the mark and the data
_KEEP = ("id", "name", "status", "epoch", "acc", "best", "groups", "where", "duration")
ARM_RUN_COLUMNS = (("seed", "seed"), *((k, v) for k, v in RUN_COLUMNS if k in _KEEP))

ArmCells = list[tuple[int, "RunRecord | None"]]


class ArmRunsScreen(BaseScreen[None, ArmCells]):
    HELP_TITLE = "An arm's runs"
    POLL_INTERVAL = 2.0
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("o", "open", "Open run"),
        Binding("C", "compare", "Compare"),
    ]

    def __init__(self, sweep_id: int, sweep_name: str, arm: str):
        super().__init__()
        self.sweep_id = sweep_id
        self.sweep_name = sweep_name
        self.arm = arm
        self.cells: ArmCells = []

    def compose(self) -> ComposeResult:
        yield Static(f" Sweep {self.sweep_id} {cut(self.sweep_name, 30)} · arm "
                     f"{cut(self.arm, NAME_TITLE)}", classes="screen-title", id="arm-title",
                     markup=False)
        table: DataTable[Any] = DataTable(id="arm-runs", cursor_type="row", zebra_stripes=True)
        for key, label in ARM_RUN_COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        self.query_one("#arm-runs", DataTable).focus()

    def poll_args(self) -> None:
        return None

    def fetch(self, args: None) -> ArmCells:
        return self.services.arm_runs(self.sweep_id, self.arm)

    def apply(self, cells: ArmCells) -> None:
        self.cells = cells
        now = self.services.now()
        keep = [i for i, (k, _) in enumerate(RUN_COLUMNS) if k in _KEEP]
        rows = []
        for i, (seed, run) in enumerate(cells):
            if run is None:
                cells_text = ("—", "", "not queued", *("",) * (len(keep) - 3))
            else:
                full = run_cells(run, marked=False, positions={}, now=now,
                                 localtime=self.services.localtime)
                cells_text = tuple(full[j] for j in keep)
            rows.append((str(run.id) if run is not None else f"cell{i}",
                         (str(seed), *cells_text)))
        refill_list(self.query_one("#arm-runs", DataTable), rows)
        self.refresh_bindings()

    def run_ids(self) -> list[int]:
        return [run.id for _, run in self.cells if run is not None]

    def current_run(self) -> int | None:
        table = self.query_one("#arm-runs", DataTable)
        if not table.row_count or not 0 <= table.cursor_row < table.row_count:
            return None
        key = str(table.ordered_rows[table.cursor_row].key.value)
        return int(key) if key.isdigit() else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "open":
            return (self.is_mounted and self.current_run() is not None) or None
        if action == "compare":
            return 2 <= len(self.run_ids()) <= MAX_COMPARE or None
        return True

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        rid = self.current_run()
        if rid is not None:
            self.host.open_run(rid)

    def action_compare(self) -> None:
        ids = self.run_ids()
        if 2 <= len(ids) <= MAX_COMPARE:
            self.host.open_compare(ids)
