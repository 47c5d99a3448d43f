"""A one-line question over the current screen: an input with a starting value; enter answers
with its text, escape with None. The starting value is not selected and the cursor is at its
end, so typing adds to what is there instead of replacing it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from mfm_tui.literal import lines

__all__ = ["PromptScreen"]


class PromptScreen(ModalScreen["str | None"]):
    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical { width: 70; max-width: 100%; height: auto; border: thick $primary;
                              background: $surface; padding: 0 1; }
    PromptScreen #prompt-question { text-style: bold; }
    PromptScreen #prompt-help { color: $text-muted; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", help: str = "",
                 max_length: int = 0):
        super().__init__()
        self.question = question
        self.value = value
        self.help = help
        self.max_length = max_length

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(lines(self.question), id="prompt-question", markup=False)
            yield Input(self.value, id="prompt-input", compact=True,
                        max_length=self.max_length, select_on_focus=False)
            yield Static(lines(self.help + "\nenter saves · esc cancels"), id="prompt-help",
                         markup=False)

    def on_mount(self) -> None:
        field = self.query_one("#prompt-input", Input)
        field.cursor_position = len(field.value)
        field.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
