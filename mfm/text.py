"""User-supplied text made safe to show: control characters visible, one line, bounded.

Run, spec and config names, error texts and config values come from users (and from other
users sharing the records). Shown raw they can break a terminal (ANSI escapes), a Rich table
(``[/]`` read as markup) or a one-line error (a 10,000-element list). Everything that prints a
user-supplied string goes through :func:`visible` (keep it literal) or :func:`one_line` (an
error message). Markup escaping is the printer's job (Rich ``Text``/``markup=False``); this
module only decides which characters reach it. Torch-free, dependency-free.
"""

from __future__ import annotations

import math
import unicodedata

__all__ = ["NAME_MAX", "visible", "one_line", "check_name", "MESSAGE_MAX", "pct"]

NAME_MAX = 200
MESSAGE_MAX = 300

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\x1b": "\\e"}


def _shown(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _is_control(ch: str) -> bool:
    # Cc: C0/C1 controls (ESC, BEL, CR...); Cf: format characters such as bidi overrides,
    # which can reorder what a terminal shows; Zl/Zp: line and paragraph separators.
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def visible(value: object, limit: int | None = None) -> str:
    """``str(value)`` with every control character written as an escape (``\\e``, ``\\x07``,
    ``\\n``), so it prints as the literal text it is; cut to ``limit`` characters with a
    note of how many were left out."""
    text = str(value)
    if any(_is_control(ch) for ch in text):
        text = "".join(_shown(ch) if _is_control(ch) else ch for ch in text)
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = f"{text[:limit]}… ({cut} more characters)"
    return text


def one_line(message: object, limit: int = MESSAGE_MAX) -> str:
    """A message as one line of at most about ``limit`` characters: its lines joined with
    spaces, control characters made visible, the rest cut with a note."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return visible(" ".join(lines), limit=limit)


def check_name(what: str, name: str) -> str | None:
    """Why ``name`` cannot name a run, spec or config (None if it can). ``what`` names the
    field in the message (``--name``, ``spec name``)."""
    if len(name) > NAME_MAX:
        return f"{what}: at most {NAME_MAX} characters (got {len(name)})"
    bad = next((ch for ch in name if _is_control(ch)), None)
    if bad is not None:
        return (f"{what}: control characters are not allowed in names "
                f"(got {_shown(bad)} at position {name.index(bad) + 1})")
    return None


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage without the sign (0.8312 -> ``83.1``); ``—`` for a value
    that is missing (None) or not a number (NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * float(value):.{digits}f}"
