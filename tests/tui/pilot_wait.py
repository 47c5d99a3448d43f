"""Waiting in Pilot tests: on a condition with a deadline, never a fixed sleep.

``wait_for`` lets the app run (messages, workers, timers) until ``predicate()`` is truthy;
``pilot.pause()`` without a delay waits until the app is idle (20 ms at least), so the loop
does not spin. Importable as ``tui.pilot_wait`` (pytest's pythonpath holds tests/); conftest's
``until`` fixture is this function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.widgets import Input

__all__ = ["focus", "show_tab", "steady_cursors", "wait_for"]


async def wait_for(pilot: Any, predicate: Callable[[], Any], timeout: float = 10.0,
                   what: str = "the condition") -> Any:
    """Return ``predicate()``'s first truthy value; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause()


def steady_cursors(app: Any) -> None:
    """Stop the text cursors of the current screen blinking (a snapshot must not catch a
    blink): a cursor that does not blink is drawn, steadily."""
    for widget in app.screen.query(Input):
        widget.cursor_blink = False


async def show_tab(pilot: Any, tab: str, tabs: str = "#tabs", timeout: float = 10.0) -> None:
    """Make ``tab`` the active pane of the current screen's TabbedContent ``tabs`` and wait
    until the pane is laid out (it has a region on the screen)."""
    screen = pilot.app.screen
    screen.query_one(tabs).active = tab
    await wait_for(pilot, lambda: screen.query_one(f"TabPane#{tab}").region, timeout,
                   f"the {tab} tab shown")


async def focus(pilot: Any, widget: Any, timeout: float = 5.0) -> None:
    """Focus ``widget`` and wait until it has the focus (keys pressed next go to it)."""
    widget.focus()
    await wait_for(pilot, lambda: widget.has_focus, timeout, f"the focus on {widget!r}")
