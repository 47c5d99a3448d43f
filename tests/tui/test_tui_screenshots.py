"""The README's screenshots (docs/tui-runs.svg, docs/tui-sweep.svg), made with Pilot and
``app.save_screenshot`` on the fixed records of the tests. Skipped unless asked for:

    MFM_TUI_SCREENSHOTS=1 pytest tests/tui/test_tui_screenshots.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tui.test_tui_sweeps import sweeps_db  # noqa: F401 — the fixture, shared

from mfm_tui.screens.runs import RunsScreen

DOCS = Path(__file__).resolve().parents[2] / "docs"
SIZE = (100, 30)

pytestmark = pytest.mark.skipif(not os.environ.get("MFM_TUI_SCREENSHOTS"),
                                reason="set MFM_TUI_SCREENSHOTS=1 to remake docs/tui-*.svg")


async def _save(app, name: str) -> None:
    for widget in app.screen.query("Input"):
        widget.cursor_blink = False
    app.save_screenshot(name, path=str(DOCS))


async def test_screenshot_runs(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.polls > 1
                    and app.status_info is not None, 10, "the runs table")
        screen = app.screen
        screen.query_one("#runs").move_cursor(row=screen.order.index(fixed_db["ids"]["mfm-live"]))
        await pilot.press("l")
        await until(pilot, lambda: screen.query_one("#runs-log").line_count >= 3
                    and screen.query_one("#log-pane").region, 5, "the log pane")
        await _save(app, "tui-runs.svg")


async def test_screenshot_sweep(sweeps_db, make_app, until):  # noqa: F811
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.db_ready and app.status_info is not None, 10, "records")
        await pilot.press("f4")
        await until(pilot, lambda: getattr(app.screen, "details", 0) >= 1
                    and app.screen.polls > 1 and app.screen.query_one("#arm-table").region,
                    10, "the arm table")
        await _save(app, "tui-sweep.svg")
