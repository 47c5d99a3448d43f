"""SVG snapshots of every screen on fixed data: fixed clock and time zone, fixed ids, fixed
size. Update after an intended change with: pytest tests/tui --snapshot-update"""

from __future__ import annotations

from tui.pilot_wait import show_tab, steady_cursors, wait_for

from mfm_tui.screens.compare import CompareScreen
from mfm_tui.screens.run import RunScreen

SIZE = (100, 30)


async def settle(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    """Wait for ``predicate``, then stop cursors blinking (a snapshot must not catch a blink;
    snap_compare lets the app go idle once more before it takes the picture)."""
    await wait_for(pilot, predicate, timeout, what)
    steady_cursors(pilot.app)


def ready(app) -> bool:
    # two polls: the footer redraws its enabled keys after the first one's refresh_bindings
    return app.db_ready and app.status_info is not None and getattr(app.screen, "polls", 2) > 1


def test_runs_screen(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        await settle(pilot, lambda: ready(pilot.app), "the runs table")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_runs_screen_at_80x24_with_marks(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        await settle(pilot, lambda: ready(pilot.app), "the runs table")
        await pilot.press("space", "space")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def _run_screen(tab: str | None):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: ready(app), "the runs table")
        app.push_screen(RunScreen(2))
        await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls > 1,
                     "the run screen")
        if tab:
            await show_tab(pilot, tab)

    return run_before


def test_run_screen_curves(fixed_db, make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_run_screen(None))


def test_run_screen_per_class(fixed_db, make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_run_screen("classes"))


def test_run_screen_modulation(fixed_db, make_app, snap_compare):
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_run_screen("modulation"))


def test_run_screen_failed_run_with_error(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: ready(app), "the runs table")
        app.push_screen(RunScreen(3))
        await settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls > 1,
                     "the run screen")
        await show_tab(pilot, "log")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_datasets_screen_with_preview(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: ready(app), "the runs table")
        await pilot.press("f2")
        await settle(pilot, lambda: getattr(app.screen, "previews", 0) > 0 and app.screen.specs,
                     "the preview")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_configs_screen_with_a_loaded_config(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: ready(app), "the runs table")
        await pilot.press("f3")
        await settle(pilot, lambda: getattr(app.screen, "configs", None), "the config list")
        await pilot.press("ctrl+o")
        await settle(pilot, lambda: "used by" in str(app.screen.query_one("#cfg-info").render()),
                     "the usage line")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_new_run_form_with_an_error(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: ready(app), "the runs table")
        await pilot.press("n")
        await settle(pilot, lambda: getattr(app.screen, "configs", None), "the form lists")
        await pilot.press("tab", "tab", "tab", *"train.epochs=0")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_compare_screen(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await settle(pilot, lambda: ready(app), "the runs table")
        app.push_screen(CompareScreen([1, 5]))
        await settle(pilot, lambda: isinstance(app.screen, CompareScreen)
                     and app.screen.polls > 0, "the compare screen")
        await show_tab(pilot, "classes")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_message_screen_for_a_file_that_is_not_sqlite(tui_env, monkeypatch, snap_compare):
    from mfm_tui.app import MfmApp
    from mfm_tui.services import Services

    tui_env["db"].write_text("not a database")
    monkeypatch.chdir(tui_env["tmp"])  # the message names the path as given: keep it fixed

    async def run_before(pilot):
        from mfm_tui.screens.message import MessageScreen

        await settle(pilot, lambda: isinstance(pilot.app.screen, MessageScreen), "the message")

    app = MfmApp(Services("experiments.db", gpu_probe=lambda: []))
    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_too_small_notice(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        from mfm_tui.screens.message import TooSmallScreen

        await settle(pilot, lambda: isinstance(pilot.app.screen, TooSmallScreen), "the notice")

    assert snap_compare(make_app(), terminal_size=(50, 14), run_before=run_before)
