"""The new-run form: a dataset spec and a named config (or a cloned run's), inline overrides,
how many seeds (one run each), the device and the slot; validated as you type, queued through
the queue."""

from __future__ import annotations

import re
from functools import partial
from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from mfm.config import ConfigError
from mfm.text import check_name
from mfm_tui.literal import NAME_CELL, cut, literal, shown
from mfm_tui.screens.base import BaseScreen
from mfm_tui.widgets.form import FormSelect, method_of, schema_default
from mfm_tui.widgets.keys_bar import KeysBar
from mfm_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from mfm.config import Config
    from mfm.store.records import ConfigRecord, DatasetSpecRecord, RunRecord
    from mfm_tui.services import QueuedRuns

Lists = tuple["list[DatasetSpecRecord]", "list[ConfigRecord]", "list[str]"]
"""What the form's selects offer: dataset specs, named configs, slot names."""

__all__ = ["NewRunScreen", "parse_overrides", "describe_config", "MAX_SEEDS"]

MAX_SEEDS = 20
CLONE = "clone"
DEVICES = ("auto", "cpu", "cuda")


def _factor(spec: dict[str, Any]) -> str:
    factor = spec.get("data", {}).get("imbalance_factor", 10)
    return f"{factor:g}" if isinstance(factor, (int, float)) else cut(factor, 8)


class _Form(VerticalScroll, can_focus=False):
    """The form's scroll area: tab moves between fields, not onto the container."""


def parse_overrides(text: str) -> list[str]:
    """``"optim.lr=0.05 train.epochs=2"`` (spaces or commas between) -> ["optim.lr=0.05", ...].
    A value may hold commas when it is a list: ``optim.milestones=0.5,0.75``."""
    items = re.split(r"[\s;]+(?=[\w.]+=)|,\s*(?=[\w.]+=)", text.strip())
    return [i.strip() for i in items if i.strip()]


def describe_config(cfg: Config) -> str:
    d = cfg.data
    return shown(f"{cfg.method.name} · {cfg.model.name} · {d.name} IF {d.imbalance_factor:g} "
                 f"{d.profile} · {cfg.train.epochs} epoch{'s' if cfg.train.epochs != 1 else ''}"
                 f" · batch {cfg.train.batch_size} · lr {cfg.optim.lr:g} · device {cfg.device}")


def _without_others(named: dict[str, Any] | None, method: Any, applies_to: Any
                    ) -> dict[str, Any] | None:
    """A copy of a named config without the keys that do not apply to ``method`` (None: the
    config's own method, then nothing is left out)."""
    if not named or method is None:
        return named
    out: dict[str, Any] = {}
    for sec, values in named.items():
        if not isinstance(values, dict):
            out[sec] = values
            continue
        kept = {}
        for k, v in values.items():
            try:
                methods = applies_to(f"{sec}.{k}")
            except KeyError:
                methods = None  # an unknown key: compose names it
            if not methods or method in methods:
                kept[k] = v
        if kept or sec not in ("mfm", "mwnet"):
            out[sec] = kept
    return out


class NewRunScreen(BaseScreen[None, None]):
    HELP_TITLE = "New run"
    FORM = True
    POLL_INTERVAL = None
    BINDINGS = [
        Binding("ctrl+s", "queue", "Queue", priority=True),
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self, clone_of: RunRecord | None = None):
        super().__init__()
        self.clone_of = clone_of
        self.specs: dict[int, DatasetSpecRecord] = {}
        self.configs: dict[int, ConfigRecord] = {}
        self.plan: tuple[list[Config], list[str | None]] | None = None
        self.busy = False

    def compose(self) -> ComposeResult:
        title = f" New run · cloned from run {self.clone_of.id}" if self.clone_of else " New run"
        yield Static(title, classes="screen-title", markup=False)
        with _Form(id="new-form"):
            yield from self._row("name", Input(placeholder="optional; seeds add -s<seed>",
                                               id="nr-name", compact=True,
                                               value=self._clone_name()))
            yield from self._row("dataset spec", FormSelect(self._spec_options(), id="nr-spec",
                                                        allow_blank=False, compact=True))
            yield Static("F2 defines dataset specs", classes="hint nr-help")
            yield from self._row("config", FormSelect(self._config_options(), id="nr-config",
                                                  allow_blank=False, compact=True))
            yield Static("F3 defines configs; runs keep the version they used",
                         classes="hint nr-help")
            yield from self._row("overrides", Input(
                placeholder="key=value ...  e.g. train.epochs=2 optim.lr=0.05", id="nr-set",
                compact=True))
            yield Static("applied on top of the config, as mfm run --set", classes="hint nr-help")
            yield from self._row("seeds", Input("1", id="nr-seeds", compact=True,
                                                type="integer"))
            yield Static(f"one run per seed: seed, seed+1, ... (1 to {MAX_SEEDS})",
                         classes="hint nr-help")
            yield from self._row("device", FormSelect(
                [("as the config says", "")] + [(d, d) for d in DEVICES], id="nr-device",
                allow_blank=False, compact=True))
            yield Static("the run's device (cpu, or cuda: the slot's GPU)",
                         classes="hint nr-help")
            yield from self._row("slot", FormSelect([("any free slot", "")], id="nr-slot",
                                                allow_blank=False, compact=True))
            yield Static("only this slot or GPU may take the runs", classes="hint nr-help")
        # outside the scroll area: what will be queued, or why not, is always in view
        yield Static("", id="nr-plan", classes="nr-plan", markup=False)
        yield Static("", id="nr-error", classes="error-line", markup=False)
        yield StatusBar()
        yield KeysBar()

    def _row(self, label: str, control: Input | Select[Any]) -> ComposeResult:
        with Horizontal(classes="nr-row"):
            yield Label(label, classes="f-label")
            yield control

    def _clone_name(self) -> str:
        if self.clone_of is None:
            return ""
        # control characters of the cloned name are written as escapes: they must not reach
        # the terminal, and a new name may not hold them
        return f"{shown(self.clone_of.name)}-clone" if self.clone_of.name else \
            f"clone-of-{self.clone_of.id}"

    def _spec_options(self) -> list[tuple[str, Any]]:
        data, factor = schema_default("data.name"), schema_default("data.imbalance_factor")
        opts: list[tuple[str, Any]] = [(f"defaults ({data}, IF {factor:g})", None)]
        if self.clone_of is not None:
            opts.insert(0, (f"run {self.clone_of.id}'s data", CLONE))
        return opts

    def _config_options(self) -> list[tuple[str, Any]]:
        method, model = schema_default("method.name"), schema_default("model.name")
        opts: list[tuple[str, Any]] = [(f"defaults ({method}, {model})", None)]
        if self.clone_of is not None:
            opts.insert(0, (f"run {self.clone_of.id}'s config", CLONE))
        return opts

    def on_mount(self) -> None:
        self.query_one("#nr-name", Input).focus()
        self.validate()
        self.call_after_refresh(self.mark_clean)

    def when_ready(self) -> None:
        self.call_service(self.load_lists, self.show_lists)

    def load_lists(self) -> Lists:  # worker
        return (self.services.list_dataset_specs(), self.services.list_configs(),
                self.services.slot_names())

    def show_lists(self, value: Lists) -> None:
        specs, configs, slots = value
        slot_sel = self.query_one("#nr-slot", Select)
        keep_slot = slot_sel.value
        # a GPU with several slots can be asked for as a whole (gpu1 for gpu1.0, gpu1.1)
        gpus = sorted({s.split(".")[0] for s in slots if "." in s})
        slot_sel.set_options([("any free slot", "")] + [(s, s) for s in [*gpus, *slots]])
        with slot_sel.prevent(Select.Changed):
            slot_sel.value = keep_slot if keep_slot in ("", *gpus, *slots) else ""
        self.specs = {r.id: r for r in specs}
        self.configs = {r.id: r for r in configs}
        spec_sel = self.query_one("#nr-spec", Select)
        cfg_sel = self.query_one("#nr-config", Select)
        keep_spec, keep_cfg = spec_sel.value, cfg_sel.value
        # prompts are literal Text: a str prompt would be read as markup
        spec_sel.set_options(self._spec_options() + [
            (literal(f"{cut(r.name, NAME_CELL)} "
                     f"({cut(r.spec.get('data', {}).get('name', 'digits'), 16)}, "
                     f"IF {_factor(r.spec)})"), r.id) for r in specs])
        cfg_sel.set_options(self._config_options() + [
            (literal(f"{cut(r.name, NAME_CELL)} v{r.version} "
                     f"({cut(method_of(r.config), 20)})"), r.id)
            for r in configs])
        clean = not self.unsaved()
        for sel, keep in ((spec_sel, keep_spec), (cfg_sel, keep_cfg)):
            with sel.prevent(Select.Changed):
                sel.value = keep
        self.validate()
        if clean:
            self.call_after_refresh(self.mark_clean)

    # -- validation ---------------------------------------------------------------------------

    def on_input_changed(self, _: Input.Changed) -> None:
        self.validate()

    def on_select_changed(self, _: Select.Changed) -> None:
        self.validate()

    def _sources(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None, int | None,
                                int | None]:
        from mfm_tui.services import split_config

        spec_v = self.query_one("#nr-spec", Select).value
        cfg_v = self.query_one("#nr-config", Select).value
        spec = named = None
        spec_id = cfg_id = None
        if self.clone_of is not None and CLONE in (spec_v, cfg_v):
            clone_spec, clone_cfg = split_config(self.clone_of.config)
            if spec_v == CLONE:
                spec, spec_id = clone_spec, self.clone_of.dataset_spec_id
            if cfg_v == CLONE:
                named, cfg_id = clone_cfg, self.clone_of.config_id
        if isinstance(spec_v, int) and spec_v in self.specs:
            spec, spec_id = self.specs[spec_v].spec, spec_v
        if isinstance(cfg_v, int) and cfg_v in self.configs:
            named, cfg_id = self.configs[cfg_v].config, cfg_v
        return spec, named, spec_id, cfg_id

    def overrides(self) -> tuple[list[str], list[str]]:
        """The override items that parse, and one error line for each that does not: the
        words of ``mfm run --set`` (``mfm.config.parse_override``'s own check and message).
        Only an unknown key the config module finds no near match for gets a hint, from the
        keys of the same name in a section (``lr`` -> ``optim.lr``)."""
        from mfm.config import describe, parse_override

        good: list[str] = []
        errors: list[str] = []
        for item in parse_overrides(self.query_one("#nr-set", Input).value):
            try:
                parse_override(item)
            except ConfigError as e:
                text = str(e)
                key = item.partition("=")[0].strip()
                if (e.key == key and "." not in key and e.message.startswith("unknown key")
                        and "did you mean" not in e.message):
                    near = [f.key for f in describe() if f.key.endswith("." + key)]
                    if near:
                        text = f"{e.key}: unknown key; did you mean {' or '.join(near)}?"
                errors.append(f"overrides: {text}")
                continue
            good.append(item)
        device = self.query_one("#nr-device", Select).value
        if device:
            good.append(f"device={device}")
        return good, errors

    def build(self) -> tuple[list[Config], list[str | None], str]:
        """The validated configs (one per seed) and names; ConfigError with every problem
        found, one per line (``errors`` lists them)."""
        configs, names, text, errors = self.check()
        if errors:
            raise ConfigError("", "\n".join(errors))
        return configs, names, text

    def check(self) -> tuple[list[Config], list[str | None], str, list[str]]:
        """(configs, names, plan text, []) or ([], [], "", every error found)."""
        from mfm.config import applies_to, parse_override

        spec, named, _, _ = self._sources()
        overrides, errors = self.overrides()
        seeds_text = self.query_one("#nr-seeds", Input).value.strip()
        seeds = 1
        try:
            seeds = int(seeds_text)
            if not 1 <= seeds <= MAX_SEEDS:
                errors.append(f"seeds: must be 1 to {MAX_SEEDS} (got {seeds})")
        except ValueError:
            errors.append(f"seeds: expected a whole number, got {shown(seeds_text)!r}")
        name = self.query_one("#nr-name", Input).value.strip() or None
        if name is not None and (why := check_name("name", name)):
            errors.append(why)
        # the method the run will train with: a key of the config that does not apply to it
        # (an mfm.* key of a cloned mfm run, now method.name=ce) is left out, not refused;
        # the user's own overrides are still checked as typed
        set_keys = {parse_override(o)[0]: parse_override(o)[1] for o in overrides}
        named = _without_others(named, set_keys.get("method.name"), applies_to)
        base: Config | None = None
        for _ in range(12):
            try:
                base = self.services.compose(dataset_spec=spec, named_config=named,
                                             overrides=overrides)
                break
            except ConfigError as e:
                errors.append(str(e))
                kept = [o for o in overrides if o.partition("=")[0].strip() != e.key]
                if len(kept) < len(overrides):
                    overrides = kept
                    continue
                from mfm_tui.widgets.form import drop_key

                if not (named and drop_key(named, e.key)) and not (
                        spec and drop_key(spec, e.key)):
                    break
        if errors or base is None:
            return [], [], "", list(dict.fromkeys(errors))
        if seeds == 1:
            return [base], [name], describe_config(base) + f" · seed {base.seed}", []
        configs: list[Config] = []
        names: list[str | None] = []
        for i in range(seeds):
            seed = base.seed + i
            configs.append(self.services.compose(dataset_spec=spec, named_config=named,
                                                 overrides=[*overrides, f"seed={seed}"]))
            names.append(f"{name or 'run'}-s{seed}")
            if why := check_name("name", f"{name or 'run'}-s{seed}"):
                return [], [], "", [f"{why} with its -s{seed} suffix"]
        return configs, names, (describe_config(base) +
                                f" · seeds {base.seed}..{base.seed + seeds - 1}"), []

    def validate(self) -> bool:
        err = self.query_one("#nr-error", Static)
        plan = self.query_one("#nr-plan", Static)
        configs, names, text, errors = self.check()
        if errors:
            self.plan = None
            err.update("\n".join(shown(e) for e in errors))
            err.display = True
            n = len(errors)
            plan.update("nothing can be queued until this is fixed" if n == 1 else
                        f"nothing can be queued until these {n} problems are fixed")
            return False
        self.plan = (configs, names)
        err.display = False
        plan.update(f"→ {len(configs)} run{'s' if len(configs) > 1 else ''}: {text}")
        return True

    # -- queue --------------------------------------------------------------------------------

    def action_queue(self) -> None:
        if self.busy:
            return
        if not self.validate() or self.plan is None:
            self.notify("fix the error first: nothing was queued", severity="error")
            return
        _, _, spec_id, cfg_id = self._sources()
        configs, names = self.plan
        self.busy = True
        chosen = self.query_one("#nr-slot", Select).value
        slot = chosen if isinstance(chosen, str) else ""
        self.call_service(partial(self.services.queue_runs, configs, names, spec_id, cfg_id,
                                  slot), self.queued, self.not_queued)

    def queued(self, result: QueuedRuns) -> None:
        self.busy = False
        ids = ", ".join(map(str, result.run_ids))
        self.app.notify(f"queued run{'s' if len(result.run_ids) > 1 else ''} {ids}; "
                        f"{result.supervisor}", timeout=6)
        self.mark_clean()
        # the runs screen selects the run just queued
        self.dismiss(result.run_ids)  # type: ignore[arg-type]

    def not_queued(self, error: str) -> None:
        self.busy = False
        err = self.query_one("#nr-error", Static)
        err.update(f"not queued: {shown(error)}")
        err.display = True
