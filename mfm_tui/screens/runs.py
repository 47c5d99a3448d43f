"""The home screen: every run, live, with filter, sort and the actions on runs."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from mfm_tui.format import (
    RUN_COLUMNS,
    SORTS,
    is_active,
    is_live,
    is_resumable,
    matches,
    run_cells,
)
from mfm_tui.literal import NAME_TITLE, cut, literal, literal_cells
from mfm_tui.screens.base import BaseScreen
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm.store.views import Fingerprint, RunsDelta

__all__ = ["RunsScreen"]

SORT_NAMES = tuple(SORTS)
MAX_COMPARE = 6


class RunsScreen(BaseScreen["dict[int, Fingerprint]", "RunsDelta"]):
    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("o", "open", "Open"),
        Binding("space", "mark", "Mark"),
        Binding("C", "compare", "Compare"),
        Binding("c", "clone", "Clone"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("delete,D", "delete", "Delete"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("w", "app.switch_mode('sweeps')", "Sweeps", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[int, RunRecord] = {}
        self.fingerprints: dict[int, Fingerprint] = {}
        self.positions: dict[int, int] = {}
        self.marked: list[int] = []
        self.order: list[int] = []
        self.cells: dict[int, tuple[str, ...]] = {}
        self.sort_name = "newest"
        self.reverse = False
        self.filter_text = ""
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-title", markup=False)
        yield Input(placeholder="filter: words, status:running, method:mfm   (/ to focus, "
                                "esc back to the table)", id="filter", compact=True)
        table: DataTable[Text] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        for key, label in RUN_COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        self._title()
        self.query_one("#runs", DataTable).focus()

    # -- polling ------------------------------------------------------------------------------

    def poll_args(self) -> dict[int, Fingerprint]:
        return dict(self.fingerprints)

    def fetch(self, known: dict[int, Fingerprint]) -> RunsDelta:
        return self.services.poll_runs(known)

    def apply(self, delta: RunsDelta) -> None:
        changed = {r.id for r in delta.changed}
        for r in delta.changed:
            self.records[r.id] = r
        for rid in delta.removed:
            self.records.pop(rid, None)
            self.cells.pop(rid, None)
            if rid in self.marked:
                self.marked.remove(rid)
        self.fingerprints = delta.fingerprints
        moved = {rid for rid in set(delta.positions) | set(self.positions)
                 if delta.positions.get(rid) != self.positions.get(rid)}
        self.positions = delta.positions
        self.loaded = True
        self.refresh_table(changed | moved, reorder=bool(changed or delta.removed))
        self.refresh_bindings()

    # -- the table ----------------------------------------------------------------------------

    def visible_ids(self) -> list[int]:
        key = SORTS[self.sort_name]
        runs = [r for r in self.records.values()
                if not self.filter_text or matches(r, self.filter_text)]
        runs.sort(key=key, reverse=self.reverse)
        return [r.id for r in runs]

    def _cells(self, rid: int, now: float) -> tuple[str, ...]:
        return run_cells(self.records[rid], marked=rid in self.marked, positions=self.positions,
                         now=now, localtime=self.services.localtime)

    def refresh_table(self, dirty: set[int] | frozenset[int] = frozenset(), *,
                      reorder: bool = True) -> None:
        """Bring the table up to date: rebuild it when the visible order changed, otherwise
        rewrite only the cells that differ (changed runs, and live ones whose times move)."""
        table: DataTable[Text] = self.query_one("#runs", DataTable)
        now = self.services.now()
        order = self.visible_ids() if reorder else self.order
        if order != self.order:
            current = self.current_id()
            table.clear()
            self.cells = {}
            for rid in order:
                cells = self._cells(rid, now)
                self.cells[rid] = cells
                table.add_row(*literal_cells(cells), key=str(rid))
            self.order = order
            if current in order:
                table.move_cursor(row=order.index(current), animate=False)
        else:
            live = [rid for rid in order
                    if rid in dirty or is_active(self.records[rid])]
            for rid in live:
                cells = self._cells(rid, now)
                old = self.cells.get(rid)
                if cells == old:
                    continue
                for (key, _), value, before in zip(RUN_COLUMNS, cells, old or ("",) * 99):
                    if value != before:
                        table.update_cell(str(rid), key, literal(value))
                self.cells[rid] = cells
        self._title()

    def _title(self) -> None:
        shown = len(self.order)
        total = len(self.records)
        count = f"{shown} of {total}" if shown != total else f"{total}"
        arrow = "↑" if self.reverse else "↓"
        marked = f" · marked {', '.join(map(str, self.marked))}" if self.marked else ""
        text = (f" Runs ({count}) · sort {self.sort_name} {arrow}{marked}" if self.loaded
                else " Runs · reading the records…")
        self.query_one("#runs-title", Static).update(text)

    def current_id(self) -> int | None:
        table = self.query_one("#runs", DataTable)
        if not self.order or table.cursor_row < 0 or table.cursor_row >= len(self.order):
            return None
        return self.order[table.cursor_row]

    def current(self) -> RunRecord | None:
        rid = self.current_id()
        return None if rid is None else self.records.get(rid)

    def on_data_table_row_highlighted(self, _: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    # -- filter and sort ----------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            self.refresh_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one("#runs", DataTable).focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.focused is self.query_one("#filter", Input):
            event.stop()
            self.query_one("#runs", DataTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        i = SORT_NAMES.index(self.sort_name)
        self.sort_name = SORT_NAMES[(i + 1) % len(SORT_NAMES)]
        self.refresh_table()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.refresh_table()

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        r = self.current() if self.is_mounted else None
        if action in ("open", "mark", "clone"):
            return r is not None or None
        if action == "cancel_run":
            return (r is not None and is_live(r)) or None
        if action == "resume":
            return (r is not None and is_resumable(r)) or None
        if action == "delete":
            return (r is not None and not is_active(r)) or None
        if action == "compare":
            return 2 <= len(self.marked) <= MAX_COMPARE or None
        return True

    def action_new_run(self) -> None:
        from mfm_tui.screens.new_run import NewRunScreen

        self.app.push_screen(NewRunScreen())

    def action_clone(self) -> None:
        from mfm_tui.screens.new_run import NewRunScreen

        r = self.current()
        if r is not None:
            self.app.push_screen(NewRunScreen(clone_of=r))

    def action_open(self) -> None:
        from mfm_tui.screens.run import RunScreen

        r = self.current()
        if r is not None:
            self.app.push_screen(RunScreen(r.id))

    def action_mark(self) -> None:
        rid = self.current_id()
        if rid is None:
            return
        if rid in self.marked:
            self.marked.remove(rid)
        elif len(self.marked) >= MAX_COMPARE:
            self.notify(f"at most {MAX_COMPARE} runs can be compared", severity="warning")
            return
        else:
            self.marked.append(rid)
        self.refresh_table({rid}, reorder=False)
        self.refresh_bindings()
        table = self.query_one("#runs", DataTable)
        if table.cursor_row < len(self.order) - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_compare(self) -> None:
        from mfm_tui.screens.compare import CompareScreen

        if not 2 <= len(self.marked) <= MAX_COMPARE:
            self.notify(f"mark 2 to {MAX_COMPARE} runs with space first", severity="warning")
            return
        self.app.push_screen(CompareScreen(list(self.marked)))

    def action_cancel_run(self) -> None:
        r = self.current()
        if r is not None:
            self.call_service(partial(self.services.cancel_run, r.id), self.acted)

    def action_resume(self) -> None:
        r = self.current()
        if r is not None:
            self.call_service(partial(self.services.resume_run, r.id), self.acted)

    def action_delete(self) -> None:
        from mfm_tui.screens.confirm import ConfirmScreen

        r = self.current()
        if r is None:
            return
        if is_active(r):
            self.notify(f"run {r.id} is {r.status}: cancel it before deleting it",
                        severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.call_service(partial(self.services.delete_run, r.id), self.acted)

        self.app.push_screen(ConfirmScreen(
            f"Delete run {r.id}{' (' + cut(r.name, NAME_TITLE) + ')' if r.name else ''}, "
            f"{r.status}, with all "
            "its metrics? Checkpoints on disk are left alone.", yes="Delete"), answered)

    def acted(self, message: str) -> None:
        """An action on a run went through: say what happened, show it at once."""
        self.notify(message, timeout=4)
        self.poll_now()
