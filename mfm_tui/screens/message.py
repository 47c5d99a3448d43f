"""Screens that say one thing: a fatal problem (the records cannot be opened), or that the
terminal is too small."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from mfm_tui.literal import lines

__all__ = ["MessageScreen", "TooSmallScreen", "MIN_WIDTH", "MIN_HEIGHT"]

MIN_WIDTH, MIN_HEIGHT = 60, 16  # below this nothing useful fits: a notice instead


class MessageScreen(Screen[None]):
    """A full-screen message with one way out: quit."""

    DEFAULT_CSS = """
    MessageScreen { align: center middle; }
    MessageScreen > Vertical { width: 76; max-width: 100%; height: auto; border: thick $error;
                               padding: 1 2; background: $surface; }
    MessageScreen #msg-title { text-style: bold; color: $error; }
    MessageScreen #msg-hint { color: $text-muted; margin-top: 1; }
    """
    BINDINGS = [Binding("q,escape,enter", "app.quit", "Quit")]

    def __init__(self, title: str, message: str, hint: str = "press q to quit"):
        super().__init__()
        self.title_text = title
        self.message = message
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lines(self.title_text), id="msg-title", markup=False)
            yield Static(lines(self.message), id="msg-text", markup=False)
            yield Static(lines(self.hint), id="msg-hint", markup=False)


class TooSmallScreen(ModalScreen[None]):
    """Shown while the terminal is smaller than 60×16 (every screen lays itself out in what it
    gets above that); goes away when it is large enough."""

    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; background: $background; }
    TooSmallScreen Static { width: auto; max-width: 100%; text-align: center; }
    """
    BINDINGS = [Binding("ctrl+q", "app.quit", "Quit"),
                Binding("f1,f2,f3,f4,ctrl+p,question_mark", "nothing", show=False, priority=True)]

    def compose(self) -> ComposeResult:
        yield Static("", id="too-small", markup=False)

    def action_nothing(self) -> None:
        """Switching screens under the notice would leave it behind."""

    def on_mount(self) -> None:
        self.show(self.app.size.width, self.app.size.height)

    def show(self, width: int, height: int) -> None:
        self.query_one("#too-small", Static).update(
            f"Make the window larger: mfm-tui needs {MIN_WIDTH}×{MIN_HEIGHT}, this one is "
            f"{width}×{height}.\n(ctrl+q quits)")
