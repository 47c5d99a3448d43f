"""``?``: every key of the screen below (its own, then the app's) and the few concepts the
workbench is built on. Esc or ? closes it."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

__all__ = ["HelpScreen", "CONCEPTS", "screen_keys"]

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


def screen_keys(screen: Screen[Any]) -> list[tuple[str, str, bool]]:
    """(key, description, applies now) for every described binding of ``screen``: its own
    first, then the app's."""
    own: list[tuple[str, str, bool]] = []
    app_keys: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    for _key, active in screen.active_bindings.items():
        b = active.binding
        if not b.description or b.action in seen:
            continue
        seen.add(b.action)
        item = (screen.app.get_key_display(b), b.description, active.enabled)
        (app_keys if active.node is screen.app else own).append(item)
    return own + app_keys


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

    def __init__(self, title: str, keys: list[tuple[str, str, bool]]):
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _, _ in self.keys), default=4) + 2
        key_lines = "\n".join(f"{k:<{width}}{d}" + ("" if on else "  (not now)")
                              for k, d, on in self.keys)
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
