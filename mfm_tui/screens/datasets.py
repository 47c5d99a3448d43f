"""Named long-tailed dataset specs: define, validate as you type, preview the per-class
train / meta / val / test counts (no torch), save, load, delete."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Input, Label, Static

from mfm.config import describe
from mfm.text import check_name
from mfm_tui import actions
from mfm_tui.literal import NAME_CELL, NAME_TITLE, cut, lines, shown
from mfm_tui.screens.base import BaseScreen, refill_list
from mfm_tui.widgets.charts import CountsChart
from mfm_tui.widgets.form import FieldRow, SchemaForm, collect_errors
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import DatasetSpecRecord

__all__ = ["DatasetsScreen", "SPEC_KEYS", "spec_from_values"]

SPEC_KEYS = ("data.name", "data.root", "data.profile", "data.imbalance_factor",
             "data.head_count", "data.meta_per_class", "data.meta_source",
             "data.meta_resample_epochs", "data.val_per_class", "data.seed",
             "data.permute_classes",
             "data.step_mu",
             "data.test_per_class")
LABELS = {"data.name": "source", "data.root": "root", "data.profile": "profile",
          "data.imbalance_factor": "imbalance factor",
          "data.head_count": "head count (0 = all)", "data.meta_per_class": "meta per class",
          "data.meta_source": "meta set: held out | resampled",
          "data.meta_resample_epochs": "resampled: redraw every N epochs",
          "data.val_per_class": "val per class (held out)",
          "data.seed": "split seed", "data.permute_classes": "permuted class order",
          "data.step_mu": "step: head fraction", "data.test_per_class": "test per class"}
PREVIEW_DELAY = 0.3


def spec_from_values(values: dict[str, Any]) -> dict[str, Any]:
    """Form values {data.key: value} -> a dataset spec {"data": {...}}."""
    return {"data": {k.partition(".")[2]: v for k, v in values.items() if k.startswith("data.")}}


class DatasetsScreen(BaseScreen[None, None]):
    HELP_TITLE = "Dataset specs"
    FORM = True
    POLL_INTERVAL = None
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+n", "new", "New", priority=True),
        Binding("ctrl+o", "load", "Load selected", priority=True),
        Binding("ctrl+d", "delete", "Delete selected", priority=True),
        Binding("escape", "app.switch_mode('runs')", "Runs"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.specs: list[DatasetSpecRecord] = []
        self.valid = False
        self.preview: dict[str, Any] | None = None
        self._preview_timer: Timer | None = None
        self.previews = 0  # previews applied (tests wait on it)

    def compose(self) -> ComposeResult:
        fields = {f.key: f for f in describe()}
        yield Static(" Dataset specs · a named data.* section, usable as mfm run --dataset NAME",
                     classes="screen-title", markup=False)
        with Horizontal():
            with Vertical(id="spec-side"):
                table: DataTable[Text] = DataTable(id="spec-list", cursor_type="row")
                table.add_columns("name", "source", "IF")
                yield table
            with Vertical(id="spec-main"):
                with Horizontal(id="spec-name-row"):
                    yield Label("name", classes="f-label")
                    yield Input(placeholder="e.g. cifar10-if100", id="spec-name", compact=True)
                yield SchemaForm([fields[k] for k in SPEC_KEYS], labels=LABELS, id="spec-form")
                yield Static("", id="spec-error", classes="error-line", markup=False)
                yield Static("", id="spec-summary", classes="hint", markup=False)
                yield CountsChart("images per class: train / meta / test", id="spec-chart")
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        self.query_one("#spec-name", Input).focus()
        self.validate()
        self.call_after_refresh(self.mark_clean)

    def when_ready(self) -> None:
        self.call_service(self.services.list_dataset_specs, self.show_list)

    # -- list ---------------------------------------------------------------------------------

    def show_list(self, specs: list[DatasetSpecRecord], follow: str | None = None) -> None:
        self.specs = specs

        def cells(rec: DatasetSpecRecord) -> tuple[str, ...]:
            data = rec.spec.get("data", {})
            factor = data.get("imbalance_factor", 10)
            return (cut(rec.name, NAME_CELL), cut(data.get("name", "digits"), 16),
                    f"{factor:g}" if isinstance(factor, (int, float)) else cut(factor, 8))
        refill_list(self.query_one("#spec-list", DataTable),
                    [(rec.name, cells(rec)) for rec in specs], follow)

    def selected(self) -> DatasetSpecRecord | None:
        table = self.query_one("#spec-list", DataTable)
        if not self.specs or not 0 <= table.cursor_row < len(self.specs):
            return None
        return self.specs[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_load()

    def action_load(self) -> None:
        rec = self.selected()
        if rec is None:
            return
        form = self.query_one("#spec-form", SchemaForm)
        values = {f"data.{k}": v for k, v in rec.spec.get("data", {}).items()}
        form.set_values(values)
        name = self.query_one("#spec-name", Input)
        with name.prevent(Input.Changed):
            name.value = shown(rec.name)  # a control character must not reach the terminal
        self.validate()
        self.mark_clean()

    # -- validation and preview ---------------------------------------------------------------

    def on_field_row_changed(self, _: FieldRow.Changed) -> None:
        self.validate_soon()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "spec-name":
            self.validate(preview=False)

    def current_spec(self) -> tuple[dict[str, Any] | None, dict[str, str]]:
        from mfm.specs import check_dataset_spec

        values, errors = self.query_one("#spec-form", SchemaForm).values()
        spec = spec_from_values(values)
        # every error at once: the fields that do not parse, then the rules on the rest
        found = {**collect_errors(check_dataset_spec, spec), **errors}
        return (None, found) if found else (spec, {})

    def validate(self, preview: bool = True) -> bool:
        spec, errors = self.current_spec()
        form = self.query_one("#spec-form", SchemaForm)
        form.show_errors(errors)
        shown = {r.info.key for r in form.rows()}
        other = [f"{k}: {m}" for k, m in errors.items() if k not in shown]
        name = self.query_one("#spec-name", Input).value.strip()
        why = check_name("name", name) if name else "name: needed to save"
        if why is not None:
            other.append(why)
        self.show_error("\n".join(other))
        self.valid = spec is not None and why is None
        if spec is not None and preview:
            self.schedule_preview(spec)
        elif spec is None:
            self.preview = None
        return self.valid

    def show_error(self, text: str) -> None:
        err = self.query_one("#spec-error", Static)
        err.update(lines(text))
        err.display = bool(text)

    def schedule_preview(self, spec: dict[str, Any]) -> None:
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY, lambda: self.call_service(
            partial(self.services.preview_counts, spec), self.previewed, self.not_previewed))

    def previewed(self, counts: dict[str, Any]) -> None:
        self.preview = counts
        self.previews += 1
        self.query_one("#spec-chart", CountsChart).set_counts(counts)
        n = len(counts["train"])
        self.query_one("#spec-summary", Static).update(
            f"{n} classes · train {sum(counts['train']):,} (max {max(counts['train'])}, min "
            f"{min(counts['train'])}) · meta {sum(counts['meta']):,}"
            + (f" · val {sum(counts['val']):,}" if sum(counts.get("val", ())) else "")
            + f" · test {sum(counts['test']):,} · split {counts['split_hash'][:10]}")

    def not_previewed(self, error: str) -> None:
        self.previews += 1
        self.preview = None
        self.query_one("#spec-chart", CountsChart).set_counts(None)
        self.query_one("#spec-summary", Static).update(f"no preview: {lines(error)}")
        key, _, message = error.partition(": ")
        row = self.query_one("#spec-form", SchemaForm).row(key)
        if row is not None and key != "data.root":  # the split cannot be built: say where
            row.show_error(message)
            self.valid = False

    # -- save / new / delete ------------------------------------------------------------------

    def action_save(self) -> None:
        if not self.validate(preview=False):
            self.notify("fix the fields marked in red first", severity="error")
            return
        spec, _ = self.current_spec()
        name = self.query_one("#spec-name", Input).value.strip()
        assert spec is not None  # validate() said so
        self.call_service(partial(self.save, name, spec), self.saved, self.not_saved)

    def not_saved(self, error: str) -> None:
        self.show_error(f"not saved: {error}")
        self.notify(f"not saved: {error}", severity="error", timeout=6)

    def save(self, name: str, spec: dict[str, Any]
             ) -> tuple[str, list[DatasetSpecRecord]]:  # worker
        self.services.save_dataset_spec(name, spec)
        return name, self.services.list_dataset_specs()

    def saved(self, value: tuple[str, list[DatasetSpecRecord]]) -> None:
        name, specs = value
        self.show_list(specs, follow=name)
        import shlex

        self.mark_clean()
        self.notify(f"dataset spec '{cut(name, NAME_TITLE)}' saved "
                    f"(mfm run --dataset {shlex.quote(name)})", timeout=4)

    def action_new(self) -> None:
        form = self.query_one("#spec-form", SchemaForm)
        form.set_values({})
        name = self.query_one("#spec-name", Input)
        name.value = ""
        name.focus()
        self.validate()
        self.mark_clean()

    def action_delete(self) -> None:
        rec = self.selected()
        if rec is None:
            return
        actions.ask(
            self, f"Delete dataset spec '{cut(rec.name, NAME_TITLE)}'? Runs that used it keep "
                  "their frozen config.",
            partial(self.call_service, partial(self.delete, rec.name), self.deleted),
            yes="Delete")

    def delete(self, name: str) -> tuple[str, list[DatasetSpecRecord]]:  # worker
        return self.services.delete_dataset_spec(name), self.services.list_dataset_specs()

    def deleted(self, value: tuple[str, list[DatasetSpecRecord]]) -> None:
        message, specs = value
        self.show_list(specs)
        self.notify(message, timeout=4)
