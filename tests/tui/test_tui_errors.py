"""Bad input around the app: records that cannot be opened, a newer schema, a terminal that
is too small; and the import rule (no torch, no SQLAlchemy before the first frame)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from mfm_tui.screens.message import MessageScreen, TooSmallScreen
from mfm_tui.screens.runs import RunsScreen


def message_text(app) -> str:
    """The message screen's text once it is on screen and composed, else "" (the screen can
    be pushed a frame before its children are mounted)."""
    if not isinstance(app.screen, MessageScreen):
        return ""
    found = app.screen.query("#msg-text")
    return str(found.first().render()) if found else ""


async def test_a_file_that_is_not_sqlite_gets_a_message_screen(tui_env, make_app, until):
    tui_env["db"].write_text("this is not a database\n")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: message_text(app), 20, "the message")
        text = message_text(app)
        assert "is not a SQLite database" in text and "\n" not in text.strip()
        await pilot.press("q")
    assert app.return_code == 0
    assert tui_env["db"].read_text() == "this is not a database\n"  # untouched


async def test_a_newer_schema_gets_a_message_screen(tui_env, make_app, make_services, until):
    make_services().open()  # create the schema
    with sqlite3.connect(tui_env["db"]) as con:
        con.execute("UPDATE schema_info SET version = 999 WHERE id = 1")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: message_text(app), 20, "the message")
        text = message_text(app).lower()
        assert "999" in text and "newer" in text


async def test_a_missing_directory_gets_a_message_screen(tui_env, until):
    from mfm_tui.app import MfmApp
    from mfm_tui.services import Services

    app = MfmApp(Services(str(tui_env["tmp"] / "nowhere" / "x.db"), gpu_probe=lambda: []))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: message_text(app), 20, "the message")
        assert "does not exist" in message_text(app)


async def test_small_terminal_shows_a_notice_until_it_is_large_enough(fixed_db, make_app,
                                                                      until):
    app = make_app()
    async with app.run_test(size=(59, 20)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen)
                    and app.screen.query("#too-small"), 5, "the notice")
        assert "59×20" in str(app.screen.query_one("#too-small").render())
        await pilot.resize_terminal(100, 15)
        await until(pilot, lambda: "100×15" in str(app.screen.query_one("#too-small").render()),
                    5, "the notice to follow the size")
        await pilot.resize_terminal(60, 16)  # the smallest size the screens lay out in
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 5, "the runs screen")
        await until(pilot, lambda: app.screen.polls >= 1, 10, "the table")
        assert app.screen.query_one("#runs").row_count == 5


@pytest.mark.slow  # a real subprocess
def test_importing_the_app_loads_neither_torch_nor_sqlalchemy():
    code = textwrap.dedent("""
        import sys
        import mfm_tui.app
        bad = sorted(m for m in ("torch", "sqlalchemy", "textual_plotext", "plotext")
                     if m in sys.modules)
        print(",".join(bad) or "clean")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "clean"


@pytest.mark.slow  # a real subprocess
def test_opening_the_records_and_listing_runs_never_loads_torch(tmp_path):
    """The app's import, its Services on a fresh database, listing and polling runs, the
    status line and the dataset specs and configs: all torch-free (SQLAlchemy is fine)."""
    code = textwrap.dedent(f"""
        import sys
        import mfm_tui.app
        from mfm_tui.services import Services

        s = Services({str(tmp_path / 'e.db')!r}, runs_root={str(tmp_path / 'runs')!r},
                     gpu_probe=lambda: [], start_supervisor=False)
        s.open()
        delta = s.poll_runs({{}})
        print("runs", len(s.list_runs()), len(delta.changed), s.status().counts,
              len(s.list_dataset_specs()), len(s.list_configs()), s.config_use("none"))
        s.close()
        print("torch" if "torch" in sys.modules else "no torch")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == ["runs 0 0 {} 0 0 None", "no torch"]


@pytest.mark.slow
def test_visiting_every_screen_never_loads_torch(tmp_path):
    """Every screen, a preview and a queued run's form (no supervisor): still no torch."""
    code = textwrap.dedent(f"""
        import asyncio, sys, time
        from mfm_tui.app import MfmApp
        from mfm_tui.services import Services

        async def main():
            app = MfmApp(Services({str(tmp_path / 'e.db')!r}, runs_root={str(tmp_path)!r},
                                  gpu_probe=lambda: [], start_supervisor=False))
            async def wait_for(pilot, predicate, what):
                deadline = time.monotonic() + 20
                while not predicate():
                    if time.monotonic() > deadline:
                        raise SystemExit(f"timed out waiting for {{what}}")
                    await pilot.pause()

            def settled(name):
                # the screen is up and what it loads when shown (thread workers) has ended
                s = app.screen
                return (app.db_ready and type(s).__name__ == name and s.is_mounted
                        and all(w.is_finished for w in app.workers if w.node is s))

            async with app.run_test(size=(100, 30)) as pilot:
                await wait_for(pilot, lambda: settled("RunsScreen"), "the runs screen")
                for key, name in (("f2", "DatasetsScreen"), ("f3", "ConfigsScreen"),
                                  ("f4", "SweepsScreen"), ("n", "NewSweepScreen"),
                                  ("escape", "SweepsScreen"), ("f1", "RunsScreen"),
                                  ("n", "NewRunScreen"), ("escape", "RunsScreen")):
                    await pilot.press(key)
                    await wait_for(pilot, lambda name=name: settled(name), name)
                await pilot.press("f2")
                await wait_for(pilot, lambda: getattr(app.screen, "previews", 0) >= 1,
                               "a preview")
                print("previews", app.screen.previews)
        asyncio.run(main())
        print("torch" if "torch" in sys.modules else "no torch")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "previews 1" in res.stdout and res.stdout.strip().endswith("no torch")
