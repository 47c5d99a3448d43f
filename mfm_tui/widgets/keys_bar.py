"""The footer: the few keys that matter on this screen (its own bindings shown in the footer),
then ``? Help``, which lists every key. One line on a short terminal, two at most otherwise:
keys that do not fit are left to the help screen and the command palette. Keys whose action
does not apply now (e.g. Resume on a running run) are dimmed."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import App
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["KeysBar", "pack", "fit", "TALL"]

HELP_ITEM = ("?", "Help", True)
TALL = 30  # from this many rows the footer may take a second line


def pack(items: list[tuple[str, str, bool]], width: int) -> list[list[tuple[str, str, bool]]]:
    """Greedy line filling of (key, description, enabled) items, two spaces apart."""
    lines: list[list[tuple[str, str, bool]]] = [[]]
    used = 0
    for item in items:
        size = len(item[0]) + 1 + len(item[1])
        gap = 2 if lines[-1] else 0
        if lines[-1] and used + gap + size > width:
            lines.append([])
            used, gap = 0, 0
        lines[-1].append(item)
        used += gap + size
    return lines


def fit(items: list[tuple[str, str, bool]], width: int, max_lines: int
        ) -> list[list[tuple[str, str, bool]]]:
    """``items`` then the help key, packed into at most ``max_lines`` lines: the last of
    ``items`` are dropped until the help key fits."""
    keep = list(items)
    while True:
        lines = pack([*keep, HELP_ITEM], width)
        if len(lines) <= max_lines or not keep:
            return lines
        keep.pop()


class KeysBar(Widget):
    DEFAULT_CSS = """
    KeysBar { dock: bottom; height: auto; background: $footer-background;
              color: $footer-foreground; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen[Any]) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh(layout=True)

    def items(self) -> list[tuple[str, str, bool]]:
        """The screen's own keys shown in the footer (the app's global keys are in the help)."""
        out: list[tuple[str, str, bool]] = []
        seen: set[str] = set()
        for _key, active in self.screen.active_bindings.items():
            b = active.binding
            if (not b.show or not b.description or b.action in seen
                    or isinstance(active.node, App)):
                continue
            seen.add(b.action)
            out.append((self.app.get_key_display(b), b.description, active.enabled))
        return out

    def key_lines(self, width: int) -> list[list[tuple[str, str, bool]]]:
        """The footer's lines at ``width``: (key, description, enabled) items."""
        tall = self.app.size.height >= TALL
        return fit(self.items(), max(10, width), 2 if tall else 1)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.key_lines(width))

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(self.key_lines(self.content_size.width)):
            if i:
                text.append("\n")
            for j, (key, desc, enabled) in enumerate(line):
                if j:
                    text.append("  ")
                text.append(key, style="bold reverse" if enabled else "dim reverse")
                text.append(" " + desc, style="" if enabled else "dim")
        return text
