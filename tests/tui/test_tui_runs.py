"""Pilot tests of the runs screen and the run screen against a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_checkpoint import write_checkpoint
from textual.widgets import DataTable

from mfm_tui.screens.confirm import ConfirmScreen
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.runs import RunsScreen
from mfm_tui.widgets.charts import ClassChart, LineChart

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow

SIZE = (100, 30)


def cells(app, run_id: int) -> list[str]:
    """Every cell of a run's row, in RUN_COLUMNS order (shown or not: a narrow table drops
    columns)."""
    return list(app.screen.cells[run_id])


def column(app, key: str) -> list[str]:
    table = app.screen.query_one("#runs", DataTable)
    return [str(v) for v in table.get_column(key)]


async def loaded(pilot, until, polls: int = 1):
    await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                and pilot.app.screen.polls >= polls, 10, "the runs table to load")


async def select(pilot, until, run_id: int) -> None:
    screen = pilot.app.screen
    await until(pilot, lambda: run_id in screen.order, 5, f"run {run_id} in the table")
    screen.query_one("#runs", DataTable).move_cursor(row=screen.order.index(run_id))
    await until(pilot, lambda: screen.current_id() == run_id, 5, f"run {run_id} highlighted")


async def test_table_shows_every_run_with_status_progress_and_accuracy(fixed_db, make_app,
                                                                       until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        assert column(app, "id") == ["5", "4", "3", "2", "1"]  # newest first
        live = cells(app, ids["mfm-live"])
        assert live[2] == "mfm-live" and live[3] == "digits/IF10" and live[4] == "mfm"
        assert live[5] == "running" and live[6] == "3/5"
        assert live[13] == "▰▰▰▰▱▱ 3/5"  # the progress column: the bar and the epochs
        assert live[10] == "cpu0 ♥2s"  # fixed clock: heartbeat 2 s ago
        assert cells(app, ids["waiting"])[5] == "queued #1"
        done = cells(app, ids["ce-base"])
        assert done[5] == "completed" and done[7] == done[8] == "74.8"
        assert done[9] == "100/82/54" and done[12] == "1m00s"


async def test_live_refresh_filter_and_sort(fixed_db, make_app, until):
    from mfm.store import Database, repo

    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        with Database(str(fixed_db["db"])) as db:
            repo.log_epoch(db, ids["mfm-live"], 3, {"acc": 0.91}, [0.9] * 10)
        await until(pilot, lambda: cells(app, ids["mfm-live"])[6] == "4/5", 5,
                    "the new epoch to show")
        assert cells(app, ids["mfm-live"])[7] == "91.0"
        await pilot.press("slash", *"status:completed", "enter")
        await until(pilot, lambda: column(app, "id") == ["5", "1"], 3, "the filter")
        await pilot.press("slash", "ctrl+u", *"ce", "escape")
        await until(pilot, lambda: set(column(app, "id")) == {"1", "3", "4", "5"}, 3,
                    "a word filter (ce, and balanced_softmax's 'ce' in its name)")
        await pilot.press("slash", "ctrl+u", "escape")
        await pilot.press("s", "s", "s")  # newest -> id -> status -> acc
        assert app.screen.sort_name == "acc"
        assert column(app, "id")[0] == str(ids["mfm-live"])  # 91.0 now the best


async def test_open_a_run_shows_curves_classes_modulation_config_and_log(fixed_db, make_app,
                                                                          until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        await select(pilot, until, ids["mfm-live"])
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls, 5,
                    "the run screen")
        screen = app.screen
        loss = screen.query_one("#loss-chart", LineChart)
        assert set(loss.series) == {"train loss", "meta loss"}
        assert len(loss.series["train loss"]) == 30
        acc = screen.query_one("#acc-chart", LineChart)
        assert set(acc.series) == {"acc", "many", "medium", "few"}
        assert acc.series["acc"].xs == [1.0, 2.0, 3.0]
        classes = screen.query_one("#class-chart", ClassChart)
        assert classes.train[0] == 300 and len(classes.accs["run 2"]) == 10
        mod = screen.query_one("#mod-chart", LineChart)
        assert "penultimate γ" in mod.series
        assert screen.query_one("#mod-table", DataTable).row_count == 1
        assert 'name = "mfm"' in str(screen.query_one("#config-text").render())
        assert screen.query_one("#log-view").line_count == 3
        # new points arrive without re-reading the old ones
        from mfm.store import Database, repo
        with Database(str(fixed_db["db"])) as db:
            repo.log_step_metrics(db, ids["mfm-live"], [("loss", 31, 3, 0.2)])
        await until(pilot, lambda: len(loss.series["train loss"]) == 31, 5, "a new step")
        await pilot.press("right_square_bracket")
        assert screen.query_one("#tabs").active == "classes"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_failed_run_shows_its_error_and_can_be_resumed(fixed_db, make_app, until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        await select(pilot, until, ids["ce-broken"])
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls, 5,
                    "the run screen")
        error = str(app.screen.query_one("#run-error").render())
        assert "RuntimeError: loss is NaN at step 7" in error
        assert app.screen.query_one("#tabs").get_tab("modulation").display is False
        # its checkpoint is gone: refused as `mfm resume` refuses it (it stays failed)
        await pilot.press("r")
        await until(pilot, lambda: any("cannot resume: its checkpoint" in str(n.message)
                                       for n in app.notices), 5, "the refusal")
        assert app.services.get_run(ids["ce-broken"]).status == "failed"
        write_checkpoint(Path(app.screen.run.checkpoint_dir, "last.pt"))
        await pilot.press("r")
        await until(pilot, lambda: app.screen.run.status == "queued", 5, "the resume")
        await pilot.press("escape")
        await until(pilot, lambda: cells(app, ids["ce-broken"])[5].startswith("queued"), 5,
                    "the table to show it queued")


async def test_cancel_a_queued_run_and_delete_with_confirmation(fixed_db, make_app, until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        await select(pilot, until, ids["waiting"])
        await pilot.press("x")
        await until(pilot, lambda: cells(app, ids["waiting"])[5] == "cancelled", 5,
                    "the queued run to be cancelled")
        # a running run: cancel is a request its supervisor acts on (marked ✗ meanwhile)
        await select(pilot, until, ids["mfm-live"])
        await pilot.press("x")  # a running run: asked first, like delete
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5,
                    "the cancel question")
        assert "Cancel run 2" in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        await until(pilot, lambda: cells(app, ids["mfm-live"])[5].endswith("✗"), 5,
                    "the cancel request to show")
        assert make_app().services.get_run(ids["mfm-live"]).cancel_requested_at is not None
        # a running run cannot be deleted: the action is disabled and refused
        assert app.screen.check_action("delete", ()) is None
        await pilot.press("D")
        assert not isinstance(app.screen, ConfirmScreen)
        await select(pilot, until, ids["ce-base"])
        await pilot.press("D")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # no: nothing happens
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 5, "the answer")
        assert str(ids["ce-base"]) in column(app, "id")
        assert make_app().services.get_run(ids["ce-base"]) is not None
        await pilot.press("delete")
        await pilot.press("y")
        await until(pilot, lambda: str(ids["ce-base"]) not in column(app, "id"), 5,
                    "the deleted run to leave the table")
    assert make_app().services.get_run(ids["ce-base"]) is None


async def test_mark_and_compare(fixed_db, make_app, until):
    from mfm_tui.screens.compare import CompareScreen

    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        assert app.screen.check_action("compare", ()) is None
        await select(pilot, until, ids["bs"])
        await pilot.press("space")  # marks and moves down
        await select(pilot, until, ids["ce-base"])
        await pilot.press("space")
        assert app.screen.marked == [ids["bs"], ids["ce-base"]]
        assert cells(app, ids["bs"])[0] == "●"
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.polls,
                    5, "the compare screen")
        screen = app.screen
        acc = screen.query_one("#cmp-acc", LineChart)
        assert set(acc.series) == {"5 bs", "1 ce-base"}
        diff = screen.query_one("#cmp-diff")
        # second marked minus first: ce-base trails balanced softmax on the rarest class
        assert "run 1 minus run 5" in diff.title_text
        assert len(diff.diff) == 10 and diff.diff[9] < 0
        table = screen.query_one("#cmp-table", DataTable)
        # one row per field, one column per run: readable at 80 columns
        assert [str(c) for c in table.get_row_at(5)] == ["acc%", "82.1", "74.8"]
        # the config diff shows only the keys that differ
        diff_table = screen.query_one("#cmp-config", DataTable)
        assert [str(c) for c in diff_table.get_row_at(0)] == [
            "method.name", "'balanced_softmax'", "'ce'"]
        assert diff_table.row_count == 1
        # the loss curves are overlaid too
        assert set(screen.query_one("#cmp-loss", LineChart).series) == {"5 bs", "1 ce-base"}


async def test_command_palette_lists_the_screen_actions(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("New run", "Open", "Mark", "Clone", "Delete", "Filter", "Sort", "Runs",
                      "Datasets", "Configs", "Quit"):
            assert title in titles
        # disabled for a completed run with nothing marked, or hidden
        assert not {"Compare", "Cancel", "Resume", "Cursor up"} & set(titles)
        from textual.command import CommandList, CommandPalette

        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), 5, "the palette")
        await pilot.press(*"Datasets")

        def datasets_first() -> bool:
            found = app.screen.query(CommandList)
            if not found or found.first().highlighted is None:
                return False
            hit = found.first().get_option_at_index(found.first().highlighted)
            return "Datasets" in str(hit.prompt)
        await until(pilot, datasets_first, 10, "Datasets among the palette's results")
        await pilot.press("enter")
        from mfm_tui.screens.datasets import DatasetsScreen
        await until(pilot, lambda: isinstance(app.screen, DatasetsScreen), 5,
                    "the palette to switch to the datasets screen")
