"""The home screen: every run, live, with filter, sort, tags and notes, a log pane that
follows the highlighted run, and the actions on runs. Filter and sort are remembered per
database (``mfm_tui.state``).

The table's columns (``TABLE_COLUMNS``) are RUN_COLUMNS' with the status split from its
progress bar, and a sparkline of each running run's recent accuracy (``trend``). When the
window is narrow, columns are dropped in one fixed order (``PRIORITY``), sized as their
content is but never narrower than any state could make them (``FIT_MIN``): which columns
show depends on the window and the records, never on which runs happen to be running."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Log, Static

from mfm_tui import actions
from mfm_tui.actions import MAX_COMPARE
from mfm_tui.format import (
    COLUMN_SORTS,
    RUN_COLUMNS,
    SORTS,
    STATUS_STYLES,
    filter_problems,
    is_active,
    is_live,
    is_resumable,
    progress_text,
    run_cells,
    run_matches,
    status_word,
)
from mfm_tui.literal import NAME_TITLE, cut, literal, shown
from mfm_tui.screens.base import BaseScreen
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.sparkline import sparkline
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm.store.views import Fingerprint, RunsDelta

__all__ = ["RunsScreen", "RunsPoll", "EMPTY_HINT", "MAX_COMPARE", "TABLE_COLUMNS",
           "CELL_KEYS", "PRIORITY", "TREND_WIDTH", "TREND_STYLE"]

SORT_NAMES = tuple(SORTS)
LABELS_EVERY = 5  # polls between two readings of tags, notes and sweeps (also on new runs)
EMPTY_HINT = "no runs yet — press n to queue one (F2 dataset specs, F3 configs, ? help)"

CELL_KEYS = (*(key for key, _ in RUN_COLUMNS), "progress", "trend")
"""What ``RunsScreen.cells`` holds per run, in this order: RUN_COLUMNS' cells (with the
status alone, ``queued #1``, ``running``, ``running ✗``), then the progress bar with its
epochs, then the accuracy sparkline (running runs only)."""
TABLE_COLUMNS = (("mark", " "), ("id", "id"), ("name", "name"), ("data", "data"),
                 ("method", "method"), ("status", "status"), ("progress", "progress"),
                 ("trend", "trend"), ("acc", "acc%"), ("best", "best%"),
                 ("groups", "many/med/few"), ("where", "slot"), ("started", "started"),
                 ("duration", "time"))
"""The table's columns, in the order they are shown."""
PRIORITY = ("mark", "id", "name", "method", "status", "progress", "acc", "trend", "data",
            "best", "duration", "groups", "where", "started")
"""Which columns stay when the table is narrow: the first ones that fit, whatever the runs'
states (a column that does not fit is skipped, a later narrower one may still fit)."""
TREND_WIDTH = 8
"""Points of the sparkline (the column is this wide for every run: the width is reserved)."""
TREND_POINTS = 60  # epochs of accuracy kept per running run (downsampled to TREND_WIDTH)
BAR_WIDTH = 6  # the progress column's bar
TREND_STYLE = "cyan"
FIT_MIN = {"status": len("starting ✗"), "trend": TREND_WIDTH, "where": len("cpu0 ♥99s"),
           "started": len("11-14 22:13"), "duration": len("59m59s"), "acc": len("99.9"),
           "best": len("99.9"), "groups": len("99/99/99")}
"""The least width a column is fitted with, so that a run changing state (a heartbeat
appearing, a start time, a result) does not change which columns fit."""
LABELS = dict(TABLE_COLUMNS)
SORT_OF = {**COLUMN_SORTS, "progress": "epoch", "trend": "acc"}
CELL_INDEX = {key: i for i, key in enumerate(CELL_KEYS)}


@dataclass(frozen=True)
class RunsPoll:
    delta: RunsDelta
    labels: dict[int, tuple[tuple[str, ...], str | None]] | None  # None: not read this time
    sweeps: dict[int, tuple[str, ...]] | None
    log: tuple[int, list[str], int] | None  # (run id, new lines, next offset)
    trends: dict[int, tuple[int, list[tuple[int, float]]]] = field(default_factory=dict)
    """Running runs whose epoch moved: (the epoch read up to, its new (epoch, accuracy)
    points)."""


PollArgs = tuple["dict[int, Fingerprint]", bool, "RunRecord | None", int, "dict[int, int]"]
"""(fingerprints, read labels and sweeps too, the run whose log the pane follows, offset,
running run id -> the last epoch read for its sparkline)."""


class RunsScreen(BaseScreen[PollArgs, RunsPoll]):
    HELP_TITLE = "Runs"
    BINDINGS = [
        Binding("n", "new_run", "New run"),
        Binding("o", "open", "Open"),
        Binding("space", "mark", "Mark"),
        Binding("C", "compare", "Compare"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("l", "log_pane", "Log"),
        Binding("t", "tags", "Tags"),
        Binding("e", "note", "Note", show=False),
        Binding("c", "clone", "Clone", show=False),
        Binding("x", "cancel_run", "Cancel", show=False),
        Binding("r", "resume", "Resume", show=False),
        Binding("delete,D", "delete", "Delete", show=False),
        Binding("S", "reverse", "Reverse sort", show=False),
        Binding("w", "app.switch_mode('sweeps')", "Sweeps", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[int, RunRecord] = {}
        self.fingerprints: dict[int, Fingerprint] = {}
        self.positions: dict[int, int] = {}
        self.sweeps: dict[int, tuple[str, ...]] = {}
        self.marked: list[int] = []
        self.order: list[int] = []
        self.cells: dict[int, tuple[str, ...]] = {}
        self.sort_name = "newest"
        self.reverse = False
        self.filter_text = ""
        self.loaded = False
        self.columns: tuple[str, ...] = ()
        self.col_width: dict[str, int] = {}
        self.follow: int | None = None   # select this run as soon as it is in the table
        self.log_run: int | None = None  # the run the log pane follows
        self.log_offset = 0
        self._labels_due = True
        self.trends: dict[int, list[tuple[int, float]]] = {}  # running runs: (epoch, acc)
        self.trend_read: dict[int, int] = {}  # running runs: the last epoch read
        self._noticed = ""  # the filter whose problems were last notified

    def compose(self) -> ComposeResult:
        yield Static("", id="runs-title", markup=False)
        yield Input(placeholder="/ filter: words, status: method: data: tag: sweep: name:",
                    id="filter", compact=True)
        yield Static(EMPTY_HINT, id="runs-empty", classes="hint", markup=False)
        table: DataTable[Text] = DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield table
        with Vertical(id="log-pane"):
            yield Static("", id="log-pane-title", markup=False)
            yield Log(max_lines=1000, id="runs-log")
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        from mfm_tui.state import load_state

        state = load_state(self.services.db_target)
        if state.get("sort") in SORTS:
            self.sort_name = state["sort"]
        self.reverse = bool(state.get("reverse", False))
        text = state.get("filter")
        if isinstance(text, str) and text:
            self.filter_text = text.strip()
            filt = self.query_one("#filter", Input)
            with filt.prevent(Input.Changed):
                filt.value = shown(text)
        self.query_one("#runs-empty").display = False
        self.query_one("#log-pane").display = False
        self._set_columns(self._fit_columns())
        self._title()
        self.query_one("#runs", DataTable).focus()

    def remember(self) -> None:
        from mfm_tui.state import save_state

        save_state(self.services.db_target, {"filter": self.filter_text,
                                             "sort": self.sort_name, "reverse": self.reverse})

    # -- polling ------------------------------------------------------------------------------

    def poll_args(self) -> PollArgs:
        log_rec = self.records.get(self.log_run) if self.log_run is not None else None
        due = self._labels_due or self.polls % LABELS_EVERY == 0
        return dict(self.fingerprints), due, log_rec, self.log_offset, dict(self.trend_read)

    def fetch(self, args: PollArgs) -> RunsPoll:
        from mfm_tui.services import ServiceError

        known, due, log_rec, offset, seen = args
        delta = self.services.poll_runs(known)
        trends: dict[int, tuple[int, list[tuple[int, float]]]] = {}
        for r in delta.changed:  # only runs whose record changed: their epoch may have moved
            if not is_active(r) or r.epoch is None or r.epoch <= seen.get(r.id, -1):
                continue
            after = max(seen.get(r.id, -1), r.epoch - TREND_POINTS)
            try:
                series = self.services.run_series(r.id, after_epoch=after,
                                                  class_epoch=r.epoch, log_offset=-1,
                                                  step_keys=())
            except ServiceError:  # gone meanwhile: the next poll says so
                continue
            trends[r.id] = (r.epoch, series.epochs.get("acc", []))
        new = any(r.id not in known for r in delta.changed)
        labels = sweeps = None
        if due or new:
            labels = self.services.run_labels()
            sweeps = self.services.run_sweeps()
        log = None
        if log_rec is not None:
            lines, nxt = self.services.read_log(log_rec, offset)
            log = (log_rec.id, lines, nxt)
        return RunsPoll(delta, labels, sweeps, log, trends)

    def apply(self, poll: RunsPoll) -> None:
        delta = poll.delta
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
        relabelled = self._labels(poll)
        trended = self._trends(poll)
        first = not self.loaded
        self.loaded = True
        self.refresh_table(changed | moved | relabelled | trended,
                           reorder=bool(changed or delta.removed or relabelled))
        if first:
            self._filter_notice()
        if poll.log is not None:
            self._log_lines(*poll.log)
        self.refresh_bindings()

    def _labels(self, poll: RunsPoll) -> set[int]:
        """Tags and notes set elsewhere (mfm tag, another mfm-tui): the runs whose changed."""
        if poll.sweeps is not None:
            self.sweeps = poll.sweeps
        if poll.labels is None:
            return set()
        self._labels_due = False
        out = set()
        for rid, rec in self.records.items():
            tags, note = poll.labels.get(rid, ((), None))
            if tuple(rec.tags) != tags or (rec.note or None) != note:
                self.records[rid] = replace(rec, tags=tags, note=note)
                out.add(rid)
        return out

    def _trends(self, poll: RunsPoll) -> set[int]:
        """Add the new accuracy points of running runs (the last TREND_POINTS kept); forget
        the runs that no longer run. The runs whose sparkline changed."""
        out = set()
        for rid, (epoch, points) in poll.trends.items():
            self.trend_read[rid] = max(epoch, self.trend_read.get(rid, -1))
            have = self.trends.setdefault(rid, [])
            last = have[-1][0] if have else -1
            new = [(e, v) for e, v in points if e > last]
            if new:
                have.extend(new)
                del have[:-TREND_POINTS]
                out.add(rid)
        for rid in list(self.trend_read):
            r = self.records.get(rid)
            if r is None or not is_active(r):
                self.trend_read.pop(rid)
                self.trends.pop(rid, None)
                out.add(rid)
        return out & set(self.records)

    # -- the table ----------------------------------------------------------------------------

    def visible_ids(self) -> list[int]:
        key = SORTS[self.sort_name]
        runs = [r for r in self.records.values()
                if not self.filter_text or run_matches(r, self.filter_text,
                                                       self.sweeps.get(r.id, ()))]
        runs.sort(key=key, reverse=self.reverse)
        return [r.id for r in runs]

    def _cells(self, rid: int, now: float) -> tuple[str, ...]:
        """The run's cells, in CELL_KEYS order."""
        r = self.records[rid]
        cells = list(run_cells(r, marked=rid in self.marked, positions=self.positions,
                               now=now, localtime=self.services.localtime))
        cells[CELL_INDEX["status"]] = status_word(r, self.positions)
        points = self.trends.get(rid, ()) if is_active(r) else ()
        return (*cells, progress_text(r, BAR_WIDTH), sparkline([v for _, v in points], TREND_WIDTH))

    def _text(self, rid: int, key: str, value: str) -> Text:
        """A cell as literal Text; the status in its colour, the sparkline in its own."""
        text = literal(value)
        if key == "status":
            text.style = STATUS_STYLES.get(self.records[rid].status, "")
        elif key == "trend":
            text.style = TREND_STYLE
        return text

    def _fit_columns(self) -> tuple[str, ...]:
        """The columns that fit the table's width, in PRIORITY order, each as wide as its
        widest cell (at least its FIT_MIN); shown in TABLE_COLUMNS order."""
        table = self.query_one("#runs", DataTable)
        width = table.size.width or self.app.size.width
        room = width - 2  # the vertical scrollbar
        chosen: set[str] = set()
        used = 0
        for key in PRIORITY:
            need = max(cell_len(LABELS[key]), self.col_width.get(key, 0),
                       FIT_MIN.get(key, 0)) + 2
            if used + need <= room:
                chosen.add(key)
                used += need
        return tuple(key for key, _ in TABLE_COLUMNS if key in chosen)

    def _set_columns(self, columns: tuple[str, ...]) -> None:
        table: DataTable[Text] = self.query_one("#runs", DataTable)
        table.clear(columns=True)
        for key in columns:
            table.add_column(LABELS[key], key=key)
        self.columns = columns

    def _measure(self, order: list[int]) -> None:
        widths = dict.fromkeys(CELL_KEYS, 0)
        for rid in order:
            for key, value in zip(CELL_KEYS, self.cells[rid]):
                n = cell_len(value)
                if n > widths[key]:
                    widths[key] = n
        self.col_width = widths

    def refresh_table(self, dirty: set[int] | frozenset[int] = frozenset(), *,
                      reorder: bool = True, rebuild: bool = False) -> None:
        """Bring the table up to date: rebuild it (columns sized to their content, as many as
        fit) when the visible order changed, otherwise rewrite only the cells that differ
        (changed runs, and live ones whose times move)."""
        table: DataTable[Text] = self.query_one("#runs", DataTable)
        now = self.services.now()
        order = self.visible_ids() if reorder else self.order
        if order != self.order or rebuild:
            current = self.current_id()
            self.cells = {rid: self._cells(rid, now) for rid in order}
            self._measure(order)
            self._set_columns(self._fit_columns())
            for rid in order:
                cells = self.cells[rid]
                table.add_row(*(self._text(rid, key, cells[CELL_INDEX[key]])
                                for key in self.columns), key=str(rid))
            self.order = order
            if current in order:
                table.move_cursor(row=order.index(current), animate=False)
        else:
            live = [rid for rid in order
                    if rid in dirty or is_active(self.records[rid])]
            grew = False
            for rid in live:
                cells = self._cells(rid, now)
                old = self.cells.get(rid)
                if cells == old:
                    continue
                for key, value, before in zip(CELL_KEYS, cells, old or ("",) * len(cells)):
                    if value == before:
                        continue
                    if cell_len(value) > self.col_width.get(key, 0):
                        self.col_width[key] = cell_len(value)
                        grew = True
                    if key in self.columns:
                        table.update_cell(str(rid), key, self._text(rid, key, value),
                                          update_width=True)
                self.cells[rid] = cells
            if grew and self._fit_columns() != self.columns:
                self.refresh_table(reorder=False, rebuild=True)
                return
        self._follow()
        self._empty()
        self._title()

    def _follow(self) -> None:
        if self.follow is not None and self.follow in self.records:
            if self.follow in self.order:
                self.query_one("#runs", DataTable).move_cursor(
                    row=self.order.index(self.follow), animate=False)
            self.follow = None

    def _empty(self) -> None:
        hint = self.query_one("#runs-empty", Static)
        if self.loaded and not self.records:
            hint.update(EMPTY_HINT)
            hint.display = True
        elif self.loaded and not self.order:
            problems = filter_problems(self.filter_text, self.records.values())
            hint.update("; ".join(problems) if problems else
                        "no run matches the filter (/ to change it, ctrl+u clears it)")
            hint.display = True
        else:
            hint.display = False

    def on_resize(self, _: events.Resize) -> None:
        if self.is_mounted and self._fit_columns() != self.columns:
            self.refresh_table(reorder=False, rebuild=True)

    def _title(self) -> None:
        shown_n = len(self.order)
        total = len(self.records)
        count = f"{shown_n} of {total}" if shown_n != total else f"{total}"
        arrow = "↑" if self.reverse else "↓"
        marked = f" · marked {', '.join(map(str, self.marked))}" if self.marked else ""
        hidden = len(TABLE_COLUMNS) - len(self.columns)
        narrow = f" · {hidden} column{'s' if hidden > 1 else ''} hidden" if hidden else ""
        text = (f" Runs ({count}){narrow} · sort {self.sort_name} {arrow}{marked}"
                if self.loaded else " Runs · reading the records…")
        if hidden and self.loaded and cell_len(text) + len(" (wider window)") <= \
                (self.size.width or self.app.size.width):
            text = text.replace(" hidden", " hidden (wider window)", 1)
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
        if self.query_one("#log-pane").display:
            self._follow_log(self.current_id())

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        name = SORT_OF.get(str(event.column_key.value))
        if name is None:
            return
        if name == self.sort_name:
            self.reverse = not self.reverse
        else:
            self.sort_name, self.reverse = name, False
        self.remember()
        self.refresh_table()

    # -- filter and sort ----------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            self.refresh_table()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.remember()
            self._filter_notice()
            self.query_one("#runs", DataTable).focus()

    def on_key(self, event: events.Key) -> None:
        if event.key == "escape" and self.focused is self.query_one("#filter", Input):
            event.stop()
            self.remember()
            self._filter_notice()
            self.query_one("#runs", DataTable).focus()

    def _filter_notice(self) -> None:
        """Say, once per filter, what it asks for that no run can have (``method:zzz``)."""
        if not self.loaded or self.filter_text == self._noticed:
            return
        self._noticed = self.filter_text
        problems = filter_problems(self.filter_text, self.records.values())
        if problems:
            self.notify("; ".join(problems), title="filter", severity="warning", timeout=8)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        i = SORT_NAMES.index(self.sort_name)
        self.sort_name = SORT_NAMES[(i + 1) % len(SORT_NAMES)]
        self.remember()
        self.refresh_table()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.remember()
        self.refresh_table()

    # -- the log pane -------------------------------------------------------------------------

    def action_log_pane(self) -> None:
        pane = self.query_one("#log-pane")
        pane.display = not pane.display
        if pane.display:
            self._follow_log(self.current_id())
        else:
            self.log_run = None
        if self.order:
            self.refresh_table(reorder=False, rebuild=True)

    def _follow_log(self, rid: int | None) -> None:
        if rid == self.log_run:
            return
        self.log_run = rid
        self.log_offset = 0
        self.query_one("#runs-log", Log).clear()
        rec = self.records.get(rid) if rid is not None else None
        title = (f" log of run {rid}" + (f" {cut(rec.name, NAME_TITLE)}" if rec and rec.name
                                         else "") + " · l hides it") if rid is not None \
            else " log · no run highlighted"
        self.query_one("#log-pane-title", Static).update(title)
        if rid is not None:
            self.poll_now()

    def _log_lines(self, rid: int, lines: list[str], offset: int) -> None:
        if rid != self.log_run:
            return  # the pane moved on to another run while this was read
        self.log_offset = offset
        if lines:
            self.query_one("#runs-log", Log).write_lines(
                [shown(line.expandtabs()) for line in lines])

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        r = self.current() if self.is_mounted else None
        if action in ("open", "mark", "clone", "tags", "note"):
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
        self.host.open_new_run(self.queued)

    def queued(self, run_ids: tuple[int, ...] | None) -> None:
        """Back from the new-run form: select the run just queued (the last one)."""
        if run_ids:
            self.follow = max(run_ids)
            self.poll_now()

    def action_clone(self) -> None:
        r = self.current()
        if r is not None:
            self.host.open_new_run(self.queued, clone_of=r)

    def action_open(self) -> None:
        r = self.current()
        if r is not None:
            self.host.open_run(r.id)

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
        if not 2 <= len(self.marked) <= MAX_COMPARE:
            self.notify(f"mark 2 to {MAX_COMPARE} runs with space first", severity="warning")
            return
        self.host.open_compare(list(self.marked))

    def action_cancel_run(self) -> None:
        r = self.current()
        if r is not None:
            actions.cancel_run(self, r, self.acted)

    def action_resume(self) -> None:
        r = self.current()
        if r is not None:
            actions.resume_run(self, r.id, self.acted)

    def action_tags(self) -> None:
        r = self.current()
        if r is not None:
            actions.edit_tags(self, r, self.tagged)

    def tagged(self, value: tuple[int, tuple[str, ...]]) -> None:
        rid, tags = value
        if rid in self.records:
            self.records[rid] = replace(self.records[rid], tags=tags)
            self.refresh_table({rid}, reorder=bool(self.filter_text))
        self.notify(f"run {rid}: tags {' '.join(tags) or '(none)'}", timeout=3)

    def action_note(self) -> None:
        r = self.current()
        if r is not None:
            actions.edit_note(self, r, self.noted)

    def noted(self, value: tuple[int, str]) -> None:
        rid, note = value
        if rid in self.records:
            self.records[rid] = replace(self.records[rid], note=note or None)
        self.notify(f"run {rid}: note {'saved' if note else 'cleared'}", timeout=3)

    def action_delete(self) -> None:
        r = self.current()
        if r is not None:
            actions.delete_run(self, r, self.acted)

    def acted(self, message: str) -> None:
        """An action on a run went through: say what happened, show it at once."""
        self.notify(message, timeout=4)
        self.poll_now()
