"""User-supplied strings (run, spec and config names, error texts, config values, log lines)
as literal text for Textual: never read as markup, control characters shown as escapes
(``mfm.text.visible``), and long names cut so what follows them stays on screen.

Textual reads a ``str`` as markup in a DataTable cell, a Select option, a notification and a
Static built without ``markup=False``; a ``rich.text.Text`` is always shown as it is. A raw
ESC would reach the terminal whatever the widget, hence ``visible`` everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from mfm.text import visible

__all__ = ["NAME_CELL", "NAME_TITLE", "NAME_LABEL", "shown", "cut", "lines", "literal",
           "literal_cells"]

NAME_CELL = 40    # a name in a table cell or a select option
NAME_TITLE = 60   # a name in a one-line title or a question
NAME_LABEL = 30   # a name in a chart's legend or title


def shown(value: object) -> str:
    """``value`` as one line with its control characters visible."""
    return visible("" if value is None else value)


def cut(value: object, width: int) -> str:
    """``shown(value)`` cut to ``width`` characters, the last one an ellipsis when cut."""
    text = shown(value)
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def lines(value: object) -> str:
    """A multi-line text with its line breaks kept and every other control character
    visible (tabs expanded)."""
    return "\n".join(visible(line.expandtabs()) for line in str(value).splitlines())


def literal(value: object, width: int | None = None) -> Text:
    """A Rich Text that shows ``value`` literally (cut to ``width`` if given)."""
    return Text(shown(value) if width is None else cut(value, width), end="")


def literal_cells(cells: Iterable[object]) -> list[Text]:
    """Table cells as literal Text (the callers have already cut long names)."""
    return [literal(c) for c in cells]
