"""Form fields generated from the config schema (``mfm.config.describe``): a compact control
per key (Select for choices, Checkbox for booleans, Input otherwise) with its default, its help
text on the line below and an inline error line that validation fills as you type."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, ScrollableContainer, Vertical, VerticalScroll
from textual.geometry import Region
from textual.message import Message
from textual.widgets import Checkbox, Input, Label, Select, Static

from mfm.config import ConfigError, FieldInfo, describe, parse_override
from mfm.text import visible
from mfm_tui.literal import lines

__all__ = ["collect_errors", "drop_key", "FieldRow", "FormSelect", "SchemaForm", "SectionLabel",
           "field_id", "format_value",
           "method_of", "schema_default", "section_of"]


MAX_ERRORS = 12


def drop_key(nested: dict[str, Any], key: str) -> bool:
    """Remove a dotted key from a nested config dict; whether it was there."""
    sec, dot, name = key.partition(".")
    if not dot:
        return nested.pop(key, _MISSING) is not _MISSING
    section = nested.get(sec)
    if isinstance(section, dict) and name in section:
        del section[name]
        return True
    return False


_MISSING = object()


def collect_errors(check: Callable[[dict[str, Any]], object], nested: dict[str, Any]
                   ) -> dict[str, str]:
    """Every error ``check`` finds in a nested config, not only the first: after each
    ConfigError the key it names is taken out (its default stands in) and the check runs
    again, until it passes, names a key the config does not set, or MAX_ERRORS."""
    import copy

    work = copy.deepcopy(nested)
    errors: dict[str, str] = {}
    for _ in range(MAX_ERRORS):
        try:
            check(work)
            break
        except ConfigError as e:
            if e.key in errors:
                break
            errors[e.key] = e.message
            if not drop_key(work, e.key):
                break
    return errors


def schema_default(key: str) -> Any:
    """The default of a config key, as the schema says (``mfm.config.describe``)."""
    return next(f.default for f in describe() if f.key == key)


def method_of(config: dict[str, Any]) -> str:
    """The method a (named) config trains with: its method.name, else the schema's default."""
    method = config.get("method")
    name = method.get("name") if isinstance(method, dict) else None
    return str(name if name is not None else schema_default("method.name"))


def field_id(key: str) -> str:
    """A DOM id for a config key (dots are not allowed in ids)."""
    return "f-" + key.replace(".", "--").replace("_", "-")


def format_value(value: Any) -> str:
    """A value as the text of its input; control characters (from the records) are written
    as escapes so that they never reach the terminal."""
    if isinstance(value, (list, tuple)):
        return ", ".join(f"{v:g}" if isinstance(v, float) else visible(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return visible(value)


def _bound(x: float) -> str:
    """A bound as written in the schema: whole numbers in full (4294967295, not 4.29497e+09)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _range(info: FieldInfo) -> str:
    parts = []
    for sym, bound in ((">=", info.ge), (">", info.gt), ("<=", info.le), ("<", info.lt)):
        if bound is not None:
            parts.append(f"{sym} {_bound(bound)}")
    return f" [{' and '.join(parts)}]" if parts else ""


class FormSelect(Select[Any]):
    """A Select whose open list stays inside its form: never over the status line and the
    keys bar below it. Textual keeps an open list inside the screen only; this keeps it
    above the bottom of the scroll area it sits in (or of the screen's body), as tall as
    fits there (12 options at most)."""

    MAX_ROWS = 12

    def on_mount(self) -> None:
        self.watch(self, "expanded", self._keep_inside, init=False)

    def area(self) -> Region:
        """Where the open list may be drawn: the nearest scroll area's region."""
        node = self.parent
        while node is not None and not isinstance(node, ScrollableContainer):
            node = node.parent
        if isinstance(node, ScrollableContainer) and node.region:
            return node.region
        return self.screen.region

    def _keep_inside(self, expanded: bool) -> None:
        if not expanded:
            return
        area = self.area()
        overlay = self.query_one("SelectOverlay")
        below = max(0, self.screen.size.height - area.bottom)
        overlay.styles.margin = (0, 0, below, 0)
        overlay.styles.max_height = max(3, min(self.MAX_ROWS, area.height))


class FieldRow(Vertical):
    """One config key: label, control, help, error."""

    class Changed(Message):
        """The user changed the value (posted for every keystroke / selection)."""

        def __init__(self, row: FieldRow):
            super().__init__()
            self.row = row

    DEFAULT_CSS = """
    FieldRow { height: auto; }
    FieldRow > Horizontal { height: 1; }
    FieldRow .f-label { width: 26; color: $text; }
    FieldRow .f-control { width: 1fr; }
    FieldRow .f-help { color: $text-muted; padding-left: 26; height: auto; }
    FieldRow .f-error { color: $error; padding-left: 26; height: auto; display: none; }
    FieldRow.-invalid .f-error { display: block; }
    FieldRow.-invalid .f-label { color: $error; text-style: bold; }
    """

    def __init__(self, info: FieldInfo, value: Any = None, *, label: str | None = None):
        super().__init__(id=field_id(info.key))
        self.info = info
        self.initial = info.default if value is None else value
        self.label = label or info.key

    def compose(self) -> ComposeResult:
        info = self.info
        with Horizontal():
            yield Label(self.label, classes="f-label")
            if info.type == "bool":
                yield Checkbox("", bool(self.initial), compact=True, classes="f-control")
            elif info.choices:
                yield FormSelect([(str(c), c) for c in info.choices], value=self.initial,
                                 allow_blank=False, compact=True, classes="f-control")
            else:
                yield Input(format_value(self.initial), compact=True, classes="f-control",
                            placeholder=f"{info.type}, default {format_value(info.default)}")
        default = "" if info.type == "bool" or info.choices else \
            f" (default {format_value(info.default) or chr(39) * 2})"
        yield Static(f"{info.help}{_range(info)}{default}", classes="f-help", markup=False)
        yield Static("", classes="f-error", markup=False)

    @property
    def control(self) -> Input | Select[Any] | Checkbox:
        return self.query_one(".f-control")  # type: ignore[return-value]

    def raw(self) -> Any:
        """The control's value as entered (text for inputs)."""
        c = self.control
        return c.value

    def value(self) -> Any:
        """The typed value; ConfigError (naming the key) when the text does not parse."""
        c = self.control
        if isinstance(c, Input):
            if self.info.type == "str":
                return c.value
            return parse_override(f"{self.info.key}={c.value}")[1]
        return c.value

    def set_value(self, value: Any) -> None:
        c = self.control
        with c.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            if isinstance(c, Input):
                c.value = format_value(value)
            elif isinstance(c, Select):
                # a value from the records that is not a choice (written by another tool)
                # would make Select raise: the default stands in, and validation decides
                c.value = value if value in (self.info.choices or ()) else self.info.default
            else:
                c.value = bool(value)

    def show_error(self, message: str | None) -> None:
        self.query_one(".f-error", Static).update(lines(message or ""))
        self.set_class(bool(message), "-invalid")

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(self))


def section_of(key: str) -> str:
    """The section a key is shown under: its prefix, or ``run`` for top-level keys."""
    return key.partition(".")[0] if "." in key else "run"


class SectionLabel(Label):
    """A section's heading (``[optim]``)."""

    def __init__(self, section: str):
        super().__init__(f"[{section}]", classes="section", markup=False, id=f"sec-{section}")
        self.section = section


class SchemaForm(VerticalScroll, can_focus=False):
    """Rows for a list of schema fields, with section headings. Not focusable itself: tab
    goes from field to field and the form scrolls to the focused one."""

    DEFAULT_CSS = """
    SchemaForm { height: 1fr; }
    SchemaForm .section { color: $accent; text-style: bold; margin-top: 1; }
    """

    def __init__(self, fields: Iterable[FieldInfo], values: dict[str, Any] | None = None, *,
                 labels: dict[str, str] | None = None, id: str | None = None):
        super().__init__(id=id)
        self.fields = list(fields)
        self.initial = dict(values or {})
        self.labels = dict(labels or {})
        self._rows: list[FieldRow] | None = None
        self._by_key: dict[str, FieldRow] | None = None

    def compose(self) -> ComposeResult:
        section = None
        for info in self.fields:
            sec = section_of(info.key)
            if sec != section:
                section = sec
                yield SectionLabel(sec)
            yield FieldRow(info, self.initial.get(info.key), label=self.labels.get(info.key))

    def rows(self) -> list[FieldRow]:
        if not self._rows:  # cached once mounted; rows are never added or removed after
            self._rows = list(self.query(FieldRow))
        return self._rows

    def section_labels(self) -> list[SectionLabel]:
        return list(self.query(SectionLabel))

    def row(self, key: str) -> FieldRow | None:
        if not self._by_key:
            self._by_key = {r.info.key: r for r in self.rows()}
        return self._by_key.get(key)

    def values(self) -> tuple[dict[str, Any], dict[str, str]]:
        """({key: typed value}, {key: error}) over the rows that parse / do not."""
        out: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for row in self.rows():
            try:
                out[row.info.key] = row.value()
            except ConfigError as e:
                errors[row.info.key] = e.message
        return out, errors

    def show_errors(self, errors: dict[str, str]) -> None:
        for row in self.rows():
            row.show_error(errors.get(row.info.key))

    def set_values(self, values: dict[str, Any]) -> None:
        for row in self.rows():
            row.set_value(values.get(row.info.key, row.info.default))
