"""Named method configs: every option of the chosen method generated from the config schema,
with defaults, help and validation as you type. Saving changed content under a name makes a
new version, so runs keep pointing at the version they ran with."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, Static

from mfm.config import FieldInfo, describe, key_applies, preset_values
from mfm.text import check_name
from mfm_tui import actions
from mfm_tui.format import flatten
from mfm_tui.literal import NAME_CELL, NAME_TITLE, cut, lines, shown
from mfm_tui.screens.base import BaseScreen, refill_list
from mfm_tui.widgets.form import (
    FieldRow,
    SchemaForm,
    collect_errors,
    method_of,
    schema_default,
    section_of,
)
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.store.records import ConfigRecord
    from mfm.store.views import ConfigUse

__all__ = ["ConfigsScreen", "applies", "config_from_values", "flatten"]


def applies(info: FieldInfo, method: str, values: dict[str, Any] | None = None) -> bool:
    """Whether a key means something for ``method`` beside the form's other ``values``
    (``mfm.config.key_applies``'s rule: ``method.cb_beta`` only with a re-weighting...)."""
    return key_applies(info.key, {**(values or {}), "method.name": method})


def config_from_values(values: dict[str, Any], fields: list[FieldInfo], method: str,
                       keep: AbstractSet[str] = frozenset()) -> dict[str, Any]:
    """The named config to save: method.name, every applicable value that differs from its
    default, and the applicable keys in ``keep`` (those the loaded config set explicitly). A
    preset's keys count from the preset's value: with ``mwnet.preset=official`` a key left at
    our default is saved, or the preset would fill in its official value."""
    out: dict[str, Any] = {"method": {"name": method}}
    filled = preset_values(values)
    for info in fields:
        key = info.key
        if key == "method.name" or key not in values or not applies(info, method, values):
            continue
        value = values[key]
        default = filled.get(key, info.default)
        default = list(default) if isinstance(default, tuple) else default
        plain = list(value) if isinstance(value, tuple) else value
        if plain == default and key not in keep:
            continue
        if "." in key:
            sec, _, name = key.partition(".")
            out.setdefault(sec, {})[name] = plain
        else:
            out[key] = plain
    return out


class ConfigsScreen(BaseScreen[None, None]):
    HELP_TITLE = "Method configs"
    FORM = True
    POLL_INTERVAL = None
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("ctrl+n", "new", "New", priority=True),
        Binding("ctrl+o", "load", "Load selected", priority=True),
        Binding("ctrl+l", "clone", "Clone", priority=True),
        Binding("ctrl+d", "delete", "Delete selected", priority=True),
        Binding("escape", "app.switch_mode('runs')", "Runs"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.fields = [f for f in describe() if not f.key.startswith("data.")]
        self.configs: list[ConfigRecord] = []
        self.loaded: ConfigRecord | None = None  # the config in the form, if any
        self.keep: set[str] = set()
        self.valid = False

    def compose(self) -> ComposeResult:
        yield Static(" Method configs · every section but data.*, usable as "
                     "mfm run --config-name NAME[@VERSION]", classes="screen-title", markup=False)
        with Horizontal():
            with Vertical(id="cfg-side"):
                table: DataTable[Text] = DataTable(id="cfg-list", cursor_type="row")
                table.add_columns("name", "v", "method")
                yield table
            with Vertical(id="cfg-main"):
                with Horizontal(id="cfg-name-row"):
                    yield Label("name", classes="f-label")
                    yield Input(placeholder="e.g. mfm-default", id="cfg-name", compact=True)
                yield Static("new config", id="cfg-info", classes="hint", markup=False)
                yield SchemaForm(self.fields, id="cfg-form")
                yield Static("", id="cfg-error", classes="error-line", markup=False)
        yield StatusBar()
        yield KeysBar()

    def on_mount(self) -> None:
        self.query_one("#cfg-name", Input).focus()
        self.call_after_refresh(self.validate)
        self.call_after_refresh(self.mark_clean)

    def when_ready(self) -> None:
        self.call_service(self.services.list_configs, self.show_list)

    @property
    def form(self) -> SchemaForm:
        return self.query_one("#cfg-form", SchemaForm)

    def method(self) -> str:
        row = self.form.row("method.name")
        return str(row.raw()) if row is not None else str(schema_default("method.name"))

    # -- list ---------------------------------------------------------------------------------

    def show_list(self, configs: list[ConfigRecord], follow: str | None = None) -> None:
        self.configs = configs
        refill_list(self.query_one("#cfg-list", DataTable),
                    [(rec.name, (cut(rec.name, NAME_CELL), str(rec.version),
                                 cut(method_of(rec.config), 20)))
                     for rec in configs], follow)

    def selected(self) -> ConfigRecord | None:
        table = self.query_one("#cfg-list", DataTable)
        if not self.configs or not 0 <= table.cursor_row < len(self.configs):
            return None
        return self.configs[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_load()

    def action_load(self) -> None:
        rec = self.selected()
        if rec is not None:
            self.fill(rec.name, rec.config, rec)
            self.call_service(partial(self.services.config_use, rec.name), self.show_use)

    def fill(self, name: str, config: dict[str, Any], rec: ConfigRecord | None = None) -> None:
        flat = flatten(config)
        self.form.set_values(flat)
        self.loaded = rec
        self.keep = set(flat)
        inp = self.query_one("#cfg-name", Input)
        with inp.prevent(Input.Changed):
            inp.value = shown(name)  # a control character must not reach the terminal
        self.query_one("#cfg-info", Static).update(
            f"version {rec.version}" if rec is not None else "new config")
        self.validate()
        if rec is not None or not name:
            self.mark_clean()

    def show_use(self, use: ConfigUse | None) -> None:
        if use is None or self.loaded is None or use.name != self.loaded.name:
            return
        runs = (f"used by run(s) {', '.join(map(str, use.run_ids))}: saving a change makes "
                f"version {use.version + 1} and leaves them as they were") if use.run_ids \
            else "not used by any run yet"
        self.query_one("#cfg-info", Static).update(f"version {use.version} · {runs}")

    # -- validation ---------------------------------------------------------------------------

    def on_field_row_changed(self, event: FieldRow.Changed) -> None:
        self.validate_soon()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "cfg-name":
            self.validate_soon()

    def current_config(self) -> tuple[dict[str, Any] | None, dict[str, str]]:
        from mfm.specs import check_named_config

        values, errors = self.form.values()
        config = config_from_values(values, self.fields, self.method(), self.keep)
        # every error at once: the fields that do not parse, then the rules on the rest
        found = {**collect_errors(check_named_config, config), **errors}
        return (None, found) if found else (config, {})

    def validate(self) -> bool:
        method = self.method()
        form = self.form
        shown_sections = set()
        current, _ = form.values()
        for row in form.rows():
            row.display = applies(row.info, method, current)
            if row.display:
                shown_sections.add(section_of(row.info.key))
        for label in form.section_labels():
            label.display = label.section in shown_sections
        config, errors = self.current_config()
        form.show_errors(errors)
        visible = {r.info.key for r in form.rows() if r.display}
        other = [f"{k}: {m}" for k, m in errors.items() if k not in visible]
        name = self.query_one("#cfg-name", Input).value.strip()
        if not name:
            why: str | None = "name: needed to save"
        elif "@" in name:
            why = "name: '@' is reserved for versions (NAME@VERSION)"
        else:
            why = check_name("name", name)
        if why is not None:
            other.append(why)
        err = self.query_one("#cfg-error", Static)
        err.update(lines("\n".join(other)))
        err.display = bool(other)
        self.valid = config is not None and why is None
        return self.valid

    # -- actions ------------------------------------------------------------------------------

    def action_save(self) -> None:
        if not self.validate():
            self.notify("fix the fields marked in red first", severity="error")
            return
        config, _ = self.current_config()
        name = self.query_one("#cfg-name", Input).value.strip()
        assert config is not None  # validate() said so
        self.call_service(partial(self.save, name, config), self.saved)

    def save(self, name: str, config: dict[str, Any]
             ) -> tuple[ConfigRecord, str, list[ConfigRecord], ConfigUse | None]:  # worker
        rec, message = self.services.save_config(name, config)
        return rec, message, self.services.list_configs(), self.services.config_use(name)

    def saved(self, value: tuple[ConfigRecord, str, list[ConfigRecord], ConfigUse | None]
              ) -> None:
        rec, message, configs, use = value
        self.show_list(configs, follow=rec.name)
        self.loaded = rec
        self.keep = set(flatten(rec.config))
        self.show_use(use)
        self.mark_clean()
        self.notify(message, timeout=5)

    def action_new(self) -> None:
        self.fill("", {})
        self.query_one("#cfg-name", Input).focus()

    def action_clone(self) -> None:
        values, _ = self.form.values()
        name = self.query_one("#cfg-name", Input).value.strip() or "config"
        config = config_from_values(values, self.fields, self.method(), self.keep)
        self.fill(f"{name.partition('@')[0]}-copy", config)
        self.query_one("#cfg-name", Input).focus()
        self.notify("cloned into a new config: rename it and save", timeout=3)

    def action_delete(self) -> None:
        rec = self.selected()
        if rec is None:
            return
        actions.ask(
            self, f"Delete config '{cut(rec.name, NAME_TITLE)}' and all its versions? (Refused "
                  "while runs use it.)",
            partial(self.call_service, partial(self.delete, rec.name), self.deleted),
            yes="Delete")

    def delete(self, name: str) -> tuple[str, list[ConfigRecord]]:  # worker
        return self.services.delete_config(name), self.services.list_configs()

    def deleted(self, value: tuple[str, list[ConfigRecord]]) -> None:
        message, configs = value
        self.show_list(configs)
        self.notify(message, timeout=4)
