"""Queue a sweep: a sweep file, or one built from a saved dataset spec, a saved config and
``key = v1, v2`` lines. ctrl+s plans it against the records (cells, reused, to run, cost)
and shows the plan; queueing is confirmed over it. Errors are one line; nothing is recorded
until the confirmation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Input, Label, Select, Static, TextArea

from mfm.text import check_name
from mfm_tui import actions
from mfm_tui.literal import NAME_CELL, NAME_TITLE, cut, literal, literal_cells, shown
from mfm_tui.screens.base import BaseScreen
from mfm_tui.sweep_text import AxesError, build_sweep, duration_text, plan_summary
from mfm_tui.widgets.form import FormSelect, method_of
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import ConfigRecord, DatasetSpecRecord
    from mfm.sweeps.plan import SweepPlan
    from mfm.sweeps.spec import SweepSpec
    from mfm_tui.services import QueuedSweep

__all__ = ["NewSweepScreen", "PLAN_COLUMNS"]

FILE, BUILD = "file", "build"
PLAN_COLUMNS = ("cell", "arm", "seed", "action", "run", "estimate")
AXES_HELP = ("one per line: key = v1, v2, ... is an axis (method.name = ce, mfm; seed = 0, 1, "
             "2); key = v sets it for every cell (train.epochs = 2)")

Lists = tuple["list[DatasetSpecRecord]", "list[ConfigRecord]"]


class _Form(VerticalScroll, can_focus=False):
    """The form's scroll area: tab moves between fields, not onto the container."""


class NewSweepScreen(BaseScreen[None, None]):
    HELP_TITLE = "New sweep"
    FORM = True
    POLL_INTERVAL = None
    BINDINGS = [
        Binding("ctrl+s", "plan", "Plan, then queue", priority=True),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, on_queued: Callable[[int], object] | None = None) -> None:
        """``on_queued``: called with the new sweep's id once it is recorded and queued."""
        super().__init__()
        self.on_queued = on_queued
        self.specs: dict[int, DatasetSpecRecord] = {}
        self.configs: dict[int, ConfigRecord] = {}
        self.plan: SweepPlan | None = None      # the plan shown (None: nothing planned)
        self.spec: SweepSpec | None = None      # what it was planned from
        self.busy = False
        self.plans = 0                          # plans shown (tests wait on it)

    def compose(self) -> ComposeResult:
        yield Static(" New sweep", classes="screen-title", markup=False)
        with _Form(id="sw-form"):
            yield from self._row("from", FormSelect([("a sweep file", FILE),
                                                 ("a spec, a config and axes", BUILD)],
                                                value=FILE, id="sw-source", allow_blank=False,
                                                compact=True))
            yield from self._row("file", Input(placeholder="path/to/sweep.toml, or a bundled "
                                                           "sweep's name: quick",
                                               id="sw-file", compact=True), "sw-file-row")
            yield from self._row("name", Input(placeholder="the sweep's name (a file: its "
                                                           "own name when empty)",
                                               id="sw-name", compact=True))
            yield Static("queueing a sweep again under its name adds only what is missing",
                         classes="hint nr-help")
            yield from self._row("dataset spec", FormSelect([("none (the defaults)", None)],
                                                        id="sw-spec", allow_blank=False,
                                                        compact=True), "sw-spec-row")
            yield from self._row("config", FormSelect([("none (the defaults)", None)],
                                                  id="sw-config", allow_blank=False,
                                                  compact=True), "sw-config-row")
            yield Label("axes", classes="f-label sw-build", id="sw-axes-label")
            yield TextArea("", id="sw-axes", classes="sw-build", soft_wrap=False)
            yield Static(AXES_HELP, classes="hint sw-build", id="sw-axes-help")
        yield Static("", id="sw-plan", classes="nr-plan", markup=False)
        table: DataTable[Any] = DataTable(id="sw-plan-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*PLAN_COLUMNS)
        yield table
        yield Static("", id="sw-error", classes="error-line", markup=False)
        yield StatusBar()
        yield KeysBar()

    def _row(self, label: str, control: Any, row_id: str | None = None) -> ComposeResult:
        with Horizontal(classes="nr-row", id=row_id):
            yield Label(label, classes="f-label")
            yield control

    def on_mount(self) -> None:
        self.call_after_refresh(self.mark_clean)
        self.query_one("#sw-plan-table", DataTable).display = False
        self.query_one("#sw-error", Static).display = False
        self._show_source()
        self.query_one("#sw-source", Select).focus()
        self.validate()

    def when_ready(self) -> None:
        self.call_service(self.load_lists, self.show_lists)

    def load_lists(self) -> Lists:  # worker
        return self.services.list_dataset_specs(), self.services.list_configs()

    def show_lists(self, value: Lists) -> None:
        specs, configs = value
        self.specs = {r.id: r for r in specs}
        self.configs = {r.id: r for r in configs}
        spec_sel = self.query_one("#sw-spec", Select)
        cfg_sel = self.query_one("#sw-config", Select)
        keep_spec, keep_cfg = spec_sel.value, cfg_sel.value
        spec_sel.set_options([("none (the defaults)", None)] + [
            (literal(cut(r.name, NAME_CELL)), r.id) for r in specs])
        cfg_sel.set_options([("none (the defaults)", None)] + [
            (literal(f"{cut(r.name, NAME_CELL)} v{r.version} ({cut(method_of(r.config), 20)})"),
             r.id) for r in configs])
        for sel, keep in ((spec_sel, keep_spec), (cfg_sel, keep_cfg)):
            with sel.prevent(Select.Changed):
                sel.value = keep if keep in (None, *(self.specs if sel is spec_sel
                                                      else self.configs)) else None
        self.validate()

    # -- the form -----------------------------------------------------------------------------

    @property
    def source(self) -> str:
        return str(self.query_one("#sw-source", Select).value)

    def _show_source(self) -> None:
        build = self.source == BUILD
        self.query_one("#sw-file-row").display = not build
        for widget in (self.query_one("#sw-spec-row"), self.query_one("#sw-config-row"),
                       *self.query(".sw-build")):
            widget.display = build

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "sw-source":
            self._show_source()
        self.changed()

    def on_input_changed(self, _: Input.Changed) -> None:
        self.changed()

    def on_text_area_changed(self, _: TextArea.Changed) -> None:
        self.changed()

    def changed(self) -> None:
        """A field changed: the plan shown no longer holds."""
        if self.plan is not None:
            self.plan = self.spec = None
            self.query_one("#sw-plan-table", DataTable).display = False
        self.validate_soon()

    def built(self) -> SweepSpec:
        """The sweep the build fields describe (AxesError / SweepError with one line)."""
        spec_v = self.query_one("#sw-spec", Select).value
        cfg_v = self.query_one("#sw-config", Select).value
        dataset = self.specs[spec_v].name if isinstance(spec_v, int) and spec_v in self.specs \
            else None
        config = None
        if isinstance(cfg_v, int) and cfg_v in self.configs:
            config = f"{self.configs[cfg_v].name}@{self.configs[cfg_v].version}"
        return build_sweep(self.query_one("#sw-name", Input).value, dataset=dataset,
                           config=config, axes_text=self.query_one("#sw-axes", TextArea).text)

    def validate(self) -> bool:
        """What can be said without the records: a built sweep parses, a name is valid."""
        from mfm.sweeps.spec import SweepError

        error: str | None = None
        note = "ctrl+s plans the sweep against the records; nothing is recorded before you " \
               "confirm"
        name = self.query_one("#sw-name", Input).value.strip()
        if self.source == BUILD:
            try:
                spec = self.built()
                note = (f"→ sweep {cut(spec.name, NAME_TITLE)}: "
                        f"{len(spec.grid)} ax{'e' if len(spec.grid) != 1 else 'i'}s; "
                        + note)
            except (AxesError, SweepError) as e:
                error = str(e)
        elif name and (why := check_name("name", name)):
            error = why
        self.show_error(error)
        if self.plan is None:
            self.query_one("#sw-plan", Static).update(
                "nothing can be planned until this is fixed" if error else note)
        return error is None

    def show_error(self, error: str | None) -> None:
        err = self.query_one("#sw-error", Static)
        err.display = error is not None
        err.update(cut(error or "", 400))

    # -- plan, confirm, queue -----------------------------------------------------------------

    def _spec_now(self) -> SweepSpec:  # worker: a file is read here
        if self.source == BUILD:
            return self.built()
        spec = self.services.read_sweep_file(self._file)
        if self._name:
            spec = dataclasses.replace(spec, name=self._name)
        return spec

    def action_plan(self) -> None:
        from mfm.sweeps.spec import SweepError

        if self.busy:
            return
        if not self.validate():
            self.notify("fix the error first: nothing was planned", severity="error")
            return
        if self.plan is not None and self.spec is not None:
            self.confirm()
            return
        self._file = self.query_one("#sw-file", Input).value
        self._name = self.query_one("#sw-name", Input).value.strip()
        try:
            built = self.built() if self.source == BUILD else None
        except (AxesError, SweepError) as e:
            self.show_error(str(e))
            return
        self.busy = True
        self.query_one("#sw-plan", Static).update("planning against the records…")
        self.call_service(partial(self._plan_worker, built), self.planned, self.not_planned)

    def _plan_worker(self, built: SweepSpec | None) -> tuple[SweepSpec, SweepPlan]:
        spec = built if built is not None else self._spec_now()
        return spec, self.services.plan_sweep(spec)

    def planned(self, value: tuple[SweepSpec, SweepPlan]) -> None:
        self.busy = False
        self.spec, self.plan = value
        self.plans += 1
        self.show_error(None)
        plan = self.plan
        self.query_one("#sw-plan", Static).update(
            f"plan of sweep {cut(self.spec.name, NAME_TITLE)}: {plan_summary(plan)}")
        table: DataTable[Any] = self.query_one("#sw-plan-table", DataTable)
        table.clear()
        for c in plan.cells:
            # a stage-2 cell says which cell's run it starts from (train.init_from = arm:NAME)
            action = c.action if c.parent is None else f"{c.action} after cell {c.parent + 1}"
            table.add_row(*literal_cells((
                str(c.cell.index + 1), cut(c.cell.arm, NAME_CELL), str(c.cell.seed), action,
                "" if c.run is None else str(c.run.id),
                "" if c.estimate_seconds is None else duration_text(c.estimate_seconds))))
        table.display = True
        self.confirm()

    def not_planned(self, error: str) -> None:
        self.busy = False
        self.plan = self.spec = None
        self.query_one("#sw-plan", Static).update("nothing was planned or recorded")
        self.show_error(f"not planned: {shown(error)}")

    def confirm(self) -> None:
        if self.plan is None or self.spec is None:
            return
        spec, plan = self.spec, self.plan
        todo = len(plan.to_run)

        def go() -> None:
            if self.plan is plan:
                self.busy = True
                self.call_service(partial(self.services.queue_sweep, spec), self.queued,
                                  self.not_queued)

        what = (f"queue {todo} run{'s' if todo != 1 else ''}" if todo
                else "record it (every cell is answered already)")
        actions.ask(self, f"Sweep {cut(spec.name, NAME_TITLE)}: {plan_summary(plan)}.\n\n"
                          f"Record the sweep and {what}?", go, yes="Queue")

    def queued(self, result: QueuedSweep) -> None:
        self.busy = False
        runs = ", ".join(map(str, result.new_run_ids))
        parts = [f"sweep {result.sweep_id} {cut(result.name, NAME_TITLE)} recorded"]
        if result.new_run_ids:
            parts.append(f"queued run{'s' if len(result.new_run_ids) > 1 else ''} {runs}")
        if result.resumed:
            parts.append(f"resumed {', '.join(map(str, result.resumed))}")
        parts.append(result.supervisor)
        self.app.notify("; ".join(parts), timeout=6)
        self.app.pop_screen()
        if self.on_queued is not None:
            self.on_queued(result.sweep_id)

    def not_queued(self, error: str) -> None:
        self.busy = False
        self.plan = self.spec = None
        self.query_one("#sw-plan-table", DataTable).display = False
        self.query_one("#sw-plan", Static).update("nothing was queued or recorded")
        self.show_error(f"not queued: {shown(error)}")
