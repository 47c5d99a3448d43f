"""One run, live: loss per step, accuracy per epoch, per-class accuracy head to tail, the
modulation per site (MFM) or the example weights (MWNet), the resolved config and the log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Log, Static, TabbedContent, TabPane

from mfm_tui import actions
from mfm_tui.format import (
    data_text,
    duration,
    epoch_text,
    is_live,
    is_resumable,
    lineage_text,
    pct,
    run_duration,
    status_text,
    where_text,
)
from mfm_tui.literal import NAME_TITLE, cut, literal_cells, shown
from mfm_tui.screens.base import BaseScreen
from mfm_tui.widgets.chart_stack import ChartStack
from mfm_tui.widgets.charts import ClassChart, LineChart
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import RunRecord
    from mfm_tui.services import RunSeries

__all__ = ["RunScreen", "config_text", "mod_rows"]

ACC_KEYS = ("acc", "many", "medium", "few", "val_acc")  # val_acc: with data.val_per_class
TABS = ("curves", "classes", "modulation", "config", "log")
MOD_STATS = ("gamma_mean", "gamma_std", "beta_mean", "beta_std")


def config_text(config: dict[str, Any]) -> str:
    """A resolved config as TOML, exactly as ``mfm show ID --toml`` writes it
    (``mfm.tomltext.to_toml``: tomllib reads it back; None values are left out), except that
    a control character inside a string is written as its TOML escape (``\\u007f``): it
    must not reach the terminal, and the text still reads back to the same value. A config
    TOML cannot hold (written by another tool) is listed key by key under a comment."""
    from mfm.tomltext import TomlValueError, to_toml

    try:
        return _escape_controls(to_toml(config))
    except TomlValueError as e:
        return f"# not TOML: {shown(str(e))}\n" + _listing(config)


def _escape_controls(text: str) -> str:
    """Control characters (only ever inside TOML strings here) as TOML escapes."""
    if all(shown(ch) == ch or ch == "\n" for ch in text):
        return text
    return "".join(ch if ch == "\n" or shown(ch) == ch
                   else (f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08X}")
                   for ch in text)


def _listing(config: dict[str, Any]) -> str:
    """Top-level keys, then one table per section, values as Python writes them."""
    out = [f"{shown(k)} = {shown(repr(v))}" for k, v in config.items()
           if not isinstance(v, dict)]
    for section, values in config.items():
        if isinstance(values, dict):
            out.append(f"\n[{shown(section)}]")
            out.extend(f"{shown(k)} = {shown(repr(v))}" for k, v in values.items())
    return "\n".join(out).strip()


def mod_rows(latest: dict[str, float]) -> list[tuple[str, ...]]:
    """Per modulation site: its latest gamma/beta mean and std (from ``mod/<site>/<stat>``)."""
    sites: dict[str, dict[str, float]] = {}
    for key, value in latest.items():
        if key.startswith("mod/"):
            site, _, stat = key[4:].rpartition("/")
            sites.setdefault(site, {})[stat] = value
    return [(cut(site, 24), *(f"{stats[s]:.4f}" if s in stats else "—" for s in MOD_STATS))
            for site, stats in sorted(sites.items())]


SeriesCursors = tuple[dict[str, int], int | None, int | None, int]
"""(after_step, after_epoch, class_epoch, log_offset): where the last poll stopped."""


class RunScreen(BaseScreen[SeriesCursors, "RunSeries"]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("right_square_bracket", "tab(1)", "Next tab"),
        Binding("left_square_bracket", "tab(-1)", "Prev tab"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("r", "resume", "Resume"),
        Binding("t", "tags", "Tags", show=False),
        Binding("e", "note", "Note", show=False),
    ]
    HELP_TITLE = "Run"

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.run: RunRecord | None = None
        self.after_step: dict[str, int] = {}
        self.after_epoch: int | None = None
        self.class_epoch: int | None = None
        self.log_offset = 0
        self.class_acc: list[float] | None = None

    def compose(self) -> ComposeResult:
        yield Static(f" Run {self.run_id} · loading…", classes="screen-title", id="run-title",
                     markup=False)
        yield Static("", id="run-error", classes="error-line", markup=False)
        yield Static("", id="run-labels", classes="hint", markup=False)
        yield Static("", id="run-lineage", classes="hint", markup=False)
        with TabbedContent(id="tabs"):
            with TabPane("Curves", id="curves"), ChartStack(id="curves-stack"):
                yield LineChart("train loss per step", xlabel="step", id="loss-chart")
                yield LineChart("test accuracy % per epoch", xlabel="epoch", scale=100.0,
                                y_range=(0, 100), id="acc-chart")
            with TabPane("Classes", id="classes"):
                yield ClassChart("per-class test accuracy, head to tail", id="class-chart")
            with TabPane("Modulation", id="modulation"):
                yield LineChart("modulation gamma mean per site (MFM) / mean example weight "
                                "(MWNet)", xlabel="step", id="mod-chart")
                table: DataTable[Any] = DataTable(id="mod-table", cursor_type="none")
                table.add_columns("site", *MOD_STATS)
                yield table
            with TabPane("Config", id="config"):
                with VerticalScroll():
                    yield Static("", id="config-text", markup=False)
            with TabPane("Log", id="log"):
                yield Log(max_lines=2000, id="log-view")
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        self.query_one("#run-error").display = False
        self.query_one("#run-labels").display = False
        self.query_one("#run-lineage").display = False

    # -- polling ------------------------------------------------------------------------------

    def poll_args(self) -> SeriesCursors:
        return (dict(self.after_step), self.after_epoch, self.class_epoch, self.log_offset)

    def fetch(self, args: SeriesCursors) -> RunSeries:
        after_step, after_epoch, class_epoch, log_offset = args
        return self.services.run_series(self.run_id, after_step=after_step,
                                        after_epoch=after_epoch, class_epoch=class_epoch,
                                        log_offset=log_offset)

    def apply(self, data: RunSeries) -> None:
        first = self.run is None
        self.run = run = data.run
        self._header(run)
        lineage = self.query_one("#run-lineage", Static)
        text = lineage_text(run, data.parent, data.children)
        lineage.update(" " + text)
        lineage.display = bool(text)
        loss = self.query_one("#loss-chart", LineChart)
        mod = self.query_one("#mod-chart", LineChart)
        for key, points in data.steps.items():
            self.after_step[key] = points[-1][0]
            if key in ("loss", "meta_loss"):
                loss.add_points("train loss" if key == "loss" else "meta loss", points)
            elif key == "weight_mean":
                mod.add_points("example weight", points)
            elif key.startswith("mod/"):
                site, _, stat = key[4:].rpartition("/")
                mod.add_points(f"{site} {'γ' if stat == 'gamma_mean' else 'β'}", points)
        acc = self.query_one("#acc-chart", LineChart)
        for key in ACC_KEYS:
            epoch_points = data.epochs.get(key)
            if epoch_points:
                acc.add_points("val" if key == "val_acc" else key,
                               [(e + 1, v) for e, v in epoch_points])
        last = [pts[-1][0] for pts in data.epochs.values() if pts]
        if last:
            self.after_epoch = max(last + [self.after_epoch or 0])
        if data.class_acc is not None:
            self.class_acc = data.class_acc
            self.class_epoch = run.epoch
        if data.class_acc is not None or first:
            counts = (run.class_counts or {}).get("train", [])
            self.query_one("#class-chart", ClassChart).set_data(
                counts, {f"run {run.id}": self.class_acc})
        rows = mod_rows(run.latest)
        table = self.query_one("#mod-table", DataTable)
        table.display = bool(rows)
        if rows:
            table.clear()
            table.add_rows([literal_cells(row) for row in rows])
        if first:
            self.query_one("#config-text", Static).update(config_text(run.config))
            if run.method not in ("mfm", "mwnet"):
                self.query_one("#tabs", TabbedContent).hide_tab("modulation")
        if data.log_lines:
            self.query_one("#log-view", Log).write_lines(
                [shown(line.expandtabs()) for line in data.log_lines])
        self.log_offset = data.log_offset
        self.refresh_bindings()

    def _header(self, run: RunRecord) -> None:
        now = self.services.now()
        final = (run.summary or {}).get("final") or {}
        best = (run.summary or {}).get("best") or {}
        acc = run.latest.get("acc", final.get("acc"))
        parts = [f" Run {run.id}" + (f" {cut(run.name, NAME_TITLE)}" if run.name else ""),
                 f"{run.method} on {data_text(run.config)}",
                 f"{status_text(run, None, now)} {epoch_text(run)}",
                 f"acc {pct(acc)}%" + (f" (best {pct(best.get('acc'))}%)" if best else ""),
                 where_text(run, now), duration(run_duration(run, now))]
        self.query_one("#run-title", Static).update(" · ".join(parts))
        labels = self.query_one("#run-labels", Static)
        bits = []
        if run.tags:
            bits.append("tags " + " ".join(shown(t) for t in run.tags))
        if run.note:
            bits.append("note " + cut(run.note.expandtabs(), 300))
        labels.update(" " + " · ".join(bits))
        labels.display = bool(bits)
        error = self.query_one("#run-error", Static)
        if run.error:
            found = [ln for ln in str(run.error).strip().splitlines() if ln.strip()]
            last = [cut(ln.expandtabs(), 300) for ln in found[-3:]]
            more = f"  (full text: Log tab / mfm show {run.id})" if len(found) > 3 else ""
            error.update("error: " + "\n".join(last) + more)
            error.display = True
        else:
            error.display = False

    def poll_failed(self, error: str) -> None:
        self.query_one("#run-title", Static).update(f" Run {self.run_id} · {shown(error)}")

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        run = self.run
        if action == "cancel_run":
            return (run is not None and is_live(run)) or None
        if action == "resume":
            return (run is not None and is_resumable(run)) or None
        if action in ("tags", "note"):
            return run is not None or None
        return True

    def action_tab(self, step: int) -> None:
        """The next (previous) chart of a short terminal's Curves tab, else the next tab."""
        tabs = self.query_one("#tabs", TabbedContent)
        if tabs.active == "curves" and self.query_one("#curves-stack", ChartStack).turn(step):
            return
        shown = [t for t in TABS if not (t == "modulation" and self.run is not None
                                         and self.run.method not in ("mfm", "mwnet"))]
        i = shown.index(tabs.active) if tabs.active in shown else 0
        tabs.active = shown[(i + step) % len(shown)]

    def action_cancel_run(self) -> None:
        if self.run is not None:
            actions.cancel_run(self, self.run, self.acted)

    def action_tags(self) -> None:
        if self.run is not None:
            actions.edit_tags(self, self.run, self.relabelled)

    def action_note(self) -> None:
        if self.run is not None:
            actions.edit_note(self, self.run, self.relabelled)

    def relabelled(self, _: object) -> None:
        self.notify("saved", timeout=2)
        self.poll_now()

    def action_resume(self) -> None:
        actions.resume_run(self, self.run_id, self.acted)

    def acted(self, message: str) -> None:
        """Cancel or resume went through: say what happened, show it at once."""
        self.notify(message, timeout=4)
        self.poll_now()
