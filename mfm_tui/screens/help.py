"""``?``: every key of the screen below (its own first, then the app's, then the focused
widget's) and the few concepts the workbench is built on. Esc or ? closes it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

__all__ = ["HelpScreen", "CONCEPTS", "GROUPS", "KeyItem", "screen_keys"]

CONCEPTS = (
    ("dataset spec", "a named data.* section (dataset, imbalance factor, profile, meta/val "
                     "split): F2. mfm run --dataset NAME"),
    ("config", "a named method config (every section but data.*), versioned: saving a change "
               "makes a new version and runs keep theirs. F3. mfm run --config-name NAME"),
    ("run", "one training: a dataset spec + a config + overrides, frozen when queued; a "
            "supervisor (mfm worker) runs it in a free slot and records its metrics"),
    ("sweep", "a grid of configs (axes × seeds) queued at once; finished cells are reused. "
              "F4. mfm sweep run FILE"),
    ("slot", "a place a run can take: a GPU (gpu0, or gpu0.1 when a GPU holds several) or "
             "cpu0; the status line shows how many are busy"),
)


SCREEN_GROUP = "this screen"
APP_GROUP = "everywhere"
WIDGET_GROUP = "in the focused list or field"
GROUPS = (SCREEN_GROUP, APP_GROUP, WIDGET_GROUP)

KeyItem = tuple[str, str, bool, str]
"""(key, description, applies now, group): the group one of ``GROUPS``."""


def screen_keys(screen: Screen[Any]) -> list[KeyItem]:
    """(key, description, applies now, group) for every described binding of ``screen``: the
    screen's own first (what a user opened help for), then the app's, then those of the
    focused widget and the generic ones every Textual screen has (cursor keys, focus moves,
    copy), which would otherwise push the screen's own a page down."""
    generic = {b.action for b in Screen.BINDINGS if isinstance(b, Binding)}
    found: dict[str, list[KeyItem]] = {g: [] for g in GROUPS}
    seen: set[str] = set()
    for _key, active in screen.active_bindings.items():
        b = active.binding
        if not b.description or b.action in seen:
            continue
        seen.add(b.action)
        if active.node is screen.app:
            group = APP_GROUP
        elif active.node is screen and b.action not in generic:
            group = SCREEN_GROUP
        else:
            group = WIDGET_GROUP
        found[group].append((screen.app.get_key_display(b), b.description, active.enabled,
                             group))
    return [item for g in GROUPS for item in found[g]]


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 90%; max-width: 100; height: 90%; border: thick $primary;
                            background: $surface; padding: 0 1; }
    HelpScreen #help-title { text-style: bold; height: 1; }
    HelpScreen VerticalScroll { height: 1fr; }
    HelpScreen .help-head { text-style: bold; color: $accent; margin-top: 1; }
    """
    BINDINGS = [Binding("escape,question_mark", "app.pop_screen", "Close", show=False)]

    def __init__(self, title: str, keys: list[KeyItem]):
        super().__init__()
        self.title_text = title
        self.keys = keys

    def key_text(self) -> str:
        """The keys by group, the screen's own first, each group under its heading."""
        width = max((len(k) for k, _, _, _ in self.keys), default=4) + 2
        out: list[str] = []
        for group in GROUPS:
            items = [item for item in self.keys if item[3] == group]
            if not items:
                continue
            if out:
                out.append("")
            out.append(f"{group}:")
            out.extend(f"  {k:<{width}}{d}" + ("" if on else "  (not now)")
                       for k, d, on, _ in items)
        return "\n".join(out)

    def compose(self) -> ComposeResult:
        key_lines = self.key_text()
        concepts = "\n".join(f"{name:<14}{text}" for name, text in CONCEPTS)
        with Vertical():
            yield Static(f"Help · {self.title_text} · esc closes", id="help-title",
                         markup=False)
            with VerticalScroll():
                yield Static("keys", classes="help-head", markup=False)
                yield Static(key_lines, id="help-keys", markup=False)
                yield Static("concepts", classes="help-head", markup=False)
                yield Static(concepts, id="help-concepts", markup=False)
                yield Static("start: mfm-tui (./experiments.db, or MFM_DB) · mfm-tui --db "
                             "PATH|URL · ctrl+p searches every action", classes="help-head",
                             markup=False)
