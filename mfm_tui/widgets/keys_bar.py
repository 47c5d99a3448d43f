"""The footer: every binding of the screen with its description, wrapped onto as many lines
as it needs (Textual's Footer is one line and cuts keys off at 80 columns). Keys whose action
does not apply now (e.g. Resume on a running run) are dimmed."""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget

__all__ = ["KeysBar", "pack"]


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


class KeysBar(Widget):
    DEFAULT_CSS = """
    KeysBar { dock: bottom; height: auto; background: $footer-background;
              color: $footer-foreground; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh(layout=True)

    def items(self) -> list[tuple[str, str, bool]]:
        out: list[tuple[str, str, bool]] = []
        seen: set[str] = set()
        palette = None
        for key, active in self.screen.active_bindings.items():
            b = active.binding
            if not b.show or not b.description or b.action in seen:
                continue
            seen.add(b.action)
            item = (self.app.get_key_display(b), b.description, active.enabled)
            if key == self.app.COMMAND_PALETTE_BINDING:
                palette = item
            else:
                out.append(item)
        if palette is None and self.app.ENABLE_COMMAND_PALETTE:
            palette = ("^p", "All commands", True)
        if palette is not None:
            out.append(palette)
        return out

    def _lines(self, width: int) -> list[list[tuple[str, str, bool]]]:
        return pack(self.items(), max(10, width))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, line in enumerate(self._lines(self.content_size.width)):
            if i:
                text.append("\n")
            for j, (key, desc, enabled) in enumerate(line):
                if j:
                    text.append("  ")
                text.append(key, style="bold reverse" if enabled else "dim reverse")
                text.append(" " + desc, style="" if enabled else "dim")
        return text
