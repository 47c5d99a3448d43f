"""mfm-tui for daily use: small terminals, help and quit, the runs table's columns, charts that
read without colour, forms that say everything at once, filter/sort remembered, tags, notes, a
log pane, and compare's config diff. Pilot tests on the fixed records of conftest; snapshots
at 80x23, 80x24 and 120x40."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Log
from tui.pilot_wait import focus, show_tab, steady_cursors, wait_for

from mfm_tui.screens.compare import CompareScreen
from mfm_tui.screens.confirm import ConfirmScreen
from mfm_tui.screens.help import HelpScreen
from mfm_tui.screens.message import TooSmallScreen
from mfm_tui.screens.new_run import NewRunScreen
from mfm_tui.screens.prompt import PromptScreen
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.runs import EMPTY_HINT, RunsScreen
from mfm_tui.widgets.charts import DiffChart, LineChart

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow

SIZES = [(80, 23), (80, 24), (120, 40), (120, 23), (79, 40), (60, 16)]


async def loaded(pilot, until, polls: int = 1) -> RunsScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                and pilot.app.screen.polls >= polls, 10, "the runs table to load")
    return pilot.app.screen


async def select(pilot, until, run_id: int) -> None:
    screen = pilot.app.screen
    await until(pilot, lambda: run_id in screen.order, 5, f"run {run_id} in the table")
    screen.query_one("#runs", DataTable).move_cursor(row=screen.order.index(run_id))
    await until(pilot, lambda: screen.current_id() == run_id, 5, f"run {run_id} highlighted")


def notified(app, text: str) -> bool:
    """Whether the app has shown a notification containing ``text`` (conftest's app keeps
    them in ``app.notices``)."""
    return any(text in n.message for n in app.notices)


# -- 1. small terminals --------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_every_size_from_60x16_shows_the_table_without_sideways_scrolling(
        fixed_db, make_app, until, size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = await loaded(pilot, until)
        assert not isinstance(app.screen, TooSmallScreen)
        table = screen.query_one("#runs", DataTable)
        await until(pilot, lambda: table.row_count == 5 and table.size.height > 1, 5,
                    "rows in view")
        assert table.max_scroll_x == 0, f"the table scrolls sideways at {size}"
        # the useful ones stay (runs_table tests the order they go in)
        assert {"id", "name", "method", "status", "acc"} <= set(screen.columns)
        if size[0] >= 120:
            assert "groups" in screen.columns and "duration" in screen.columns


async def test_below_60x16_a_notice_instead(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(59, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, TooSmallScreen), 5, "the notice")


async def test_the_empty_table_does_not_scroll_sideways_and_says_what_to_do(
        tui_env, make_app, until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, until)
        hint = screen.query_one("#runs-empty")
        assert hint.display and EMPTY_HINT in str(hint.render())
        assert "press n to queue one" in EMPTY_HINT
        assert screen.query_one("#runs", DataTable).max_scroll_x == 0


# -- 2. help, quit, footer -----------------------------------------------------------------------

async def test_question_mark_lists_every_key_and_the_concepts(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        keys = str(app.screen.query_one("#help-keys").render())
        for desc in ("New run", "Open", "Mark", "Compare", "Clone", "Cancel", "Resume",
                     "Delete", "Filter", "Sort", "Reverse sort", "Tags", "Note", "Log",
                     "Datasets", "Configs", "Sweeps", "Help", "Quit"):
            assert desc in keys, desc
        concepts = str(app.screen.query_one("#help-concepts").render())
        for word in ("dataset spec", "config", "run", "sweep", "slot"):
            assert word in concepts
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 5, "help closed")


async def test_footer_shows_the_few_keys_that_matter_on_one_line(fixed_db, make_app, until):
    from mfm_tui.widgets.keys_bar import KeysBar

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await loaded(pilot, until)
        bar = screen.query_one(KeysBar)
        lines = bar.key_lines(bar.content_size.width)
        assert len(lines) == 1
        shown = [d for _, d, _ in lines[0]]
        assert shown[0] == "New run" and shown[-1] == "Help"
        assert "Datasets" not in shown  # global keys live in the help


async def test_q_quits(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, 5, "the app to quit")


async def test_quitting_with_an_unsaved_form_asks_first(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen)
                    and app.screen.configs, 10, "the form")
        assert not app.unsaved_forms()
        await pilot.press(*"q-typed")  # q in a field is text, not quit
        assert app.screen.query_one("#nr-name", Input).value == "q-typed"
        assert app.unsaved_forms() == ["New run"]
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 5, "the question")
        assert "Unsaved changes in: New run" in str(app.screen.query_one("#question").render())
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen), 5, "back to the form")
        await pilot.press("ctrl+q", "y")
        await until(pilot, lambda: not app.is_running, 5, "the app to quit")


# -- 3. the runs table ---------------------------------------------------------------------------

async def test_columns_grow_with_their_content_and_the_new_run_is_selected(
        fixed_db, make_app, until):
    from mfm.store import Database, repo

    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await loaded(pilot, until)
        table = screen.query_one("#runs", DataTable)
        with Database(str(fixed_db["db"])) as db:
            # the fixed clock is T0 + 3600: a heartbeat 100,000 s old, an epoch far beyond 5
            repo.update_run(db, ids["mfm-live"], epoch=1998,
                            heartbeat_at=1_700_000_000.0 + 3600 - 100_000)
        await until(pilot, lambda: screen.cells[ids["mfm-live"]][6] == "1999/5", 5,
                    "the epoch to change")
        bar = screen.cells[ids["mfm-live"]][13]
        assert bar.endswith(" 1999/5")
        assert table.columns["progress"].get_render_width(table) >= len(bar) + 2
        where = screen.cells[ids["mfm-live"]][10]
        assert table.columns["where"].get_render_width(table) >= len(where) + 2
        # queueing from the TUI selects the run just queued
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen)
                    and app.screen.plan is not None, 10, "a valid form")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen)
                    and screen.current_id() == 6, 10, "the new run selected")


# -- 4. charts -----------------------------------------------------------------------------------

def chart_lines(chart) -> list[str]:
    return chart.render().plain.splitlines()


async def test_charts_keep_legends_out_of_the_plot_and_mark_each_series(fixed_db, make_app,
                                                                        until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        app.push_screen(RunScreen(2))
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls, 10,
                    "the run screen")
        loss = app.screen.query_one("#loss-chart", LineChart)
        lines = chart_lines(loss)
        assert "─● train loss" in lines[0] and "─■ meta loss" in lines[0]
        assert not any("train loss" in line for line in lines[1:])  # nothing over the data
        assert sum(line.count("■") for line in lines[1:]) >= 2  # meta loss: its own glyph
        # a short run: two epochs are two marked points joined by a line
        acc = app.screen.query_one("#acc-chart", LineChart)
        acc.clear_series()
        acc.add_points("acc", [(1, 0.2), (2, 0.6)])
        body = chart_lines(acc)[1:]  # render() draws the series it holds now
        assert sum(line.count("●") for line in body) == 2
        assert any(ch in "".join(body) for ch in "⠁⠂⠄⡀⠈⠐⠠⢀⣀⠉⠒⠤")  # the line between
        await show_tab(pilot, "classes")
        chart = app.screen.query_one("#class-chart")
        await until(pilot, lambda: chart.size.width > 0, 5, "the per-class chart laid out")
        classes = chart_lines(chart)
        assert "accuracy % (left axis)" in "\n".join(classes[:2])
        assert "train images (right axis)" in "\n".join(classes[:2])
        assert not any("⅃" in line or " L " in line for line in classes)


async def test_the_difference_plot_has_a_zero_line_and_round_ticks(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        app.push_screen(CompareScreen([1, 5]))
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.polls,
                    10, "the compare screen")
        await show_tab(pilot, "diff")
        diff = app.screen.query_one("#cmp-diff", DiffChart)
        await until(pilot, lambda: diff.size.width > 0, 5, "the difference chart laid out")
        lines = chart_lines(diff)
        assert "run 5 better" in lines[0] and "run 1 better" in lines[0]
        zero = [line for line in lines if line.lstrip().startswith("0├")]
        assert zero and "─" in zero[0]
        ticks = [line.replace("├", "┤").split("┤")[0].strip() for line in lines
                 if "┤" in line or "├" in line]
        assert ticks and all(t.lstrip("+-").isdigit() for t in ticks), ticks


# -- 5. forms ------------------------------------------------------------------------------------

async def open_new_run(pilot, until, clone: bool = False) -> NewRunScreen:
    await pilot.press("c" if clone else "n")
    await until(pilot, lambda: isinstance(pilot.app.screen, NewRunScreen)
                and pilot.app.screen.configs, 10, "the form")
    return pilot.app.screen


async def set_input(pilot, widget: Input, text: str) -> None:
    await focus(pilot, widget)
    await pilot.press("ctrl+a", "ctrl+k", *text)


async def test_new_run_shows_every_error_at_once_with_did_you_mean(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        form = await open_new_run(pilot, until)
        await set_input(pilot, form.query_one("#nr-set", Input),
                        "lr=0.1 train.epochs=0 optim.momentum=-1")
        await set_input(pilot, form.query_one("#nr-seeds", Input), "99")
        await until(pilot, lambda: form.plan is None, 5, "the errors")
        _, _, _, errors = form.check()
        text = "\n".join(errors)
        assert "did you mean optim.lr" in text
        assert "train.epochs" in text and "optim.momentum" in text and "seeds" in text
        assert len(errors) == 4
        assert "4 problems" in str(form.query_one("#nr-plan").render())


async def test_cloning_an_mfm_run_as_ce_drops_the_mfm_keys(fixed_db, make_app, until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, until)
        await select(pilot, until, ids["mfm-live"])
        form = await open_new_run(pilot, until, clone=True)
        await set_input(pilot, form.query_one("#nr-set", Input), "method.name=ce")
        await until(pilot, lambda: form.plan is not None, 5, "a valid plan")
        configs, _ = form.plan
        assert configs[0].method.name == "ce"
        # a key the user sets that does not apply is still refused
        await set_input(pilot, form.query_one("#nr-set", Input),
                        "method.name=ce mfm.meta_lr=0.1")
        await until(pilot, lambda: form.plan is None, 5, "the refusal")
        assert any("mfm.meta_lr" in e for e in form.check()[3])


async def test_a_dataset_spec_that_cannot_be_built_is_refused(tui_env, make_services):
    from mfm_tui.services import ServiceError

    services = make_services()
    with pytest.raises(ServiceError, match="imbalance_factor"):
        services.save_dataset_spec("too-long", {"data": {"imbalance_factor": 1000.0}})
    assert services.list_dataset_specs() == []
    # data missing on this machine is not a reason to refuse (runs may be served elsewhere)
    services.save_dataset_spec("elsewhere", {"data": {"name": "imagefolder",
                                                      "root": "/nowhere/at/all"}})
    assert services.get_dataset_spec("elsewhere") is not None


async def test_the_saved_spec_hint_is_shell_quoted(tui_env, make_app, until):
    from mfm_tui.screens.datasets import DatasetsScreen

    app = make_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        await loaded(pilot, until)
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, DatasetsScreen), 5, "F2")
        await set_input(pilot, app.screen.query_one("#spec-name", Input), "my spec")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: notified(app, "--dataset 'my spec'"), 10, "the hint")


# -- 6. filter, sort, tags, notes, log pane -----------------------------------------------------

async def test_tags_notes_and_the_filter_and_sort_remembered(fixed_db, make_app,
                                                             make_services, until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot, until)
        await select(pilot, until, ids["ce-base"])
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), 5, "the tags prompt")
        await pilot.press(*"best keep", "enter")
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).tags
                    == ("best", "keep"), 5, "the tags saved")
        await pilot.press("e")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen), 5, "the note prompt")
        await pilot.press(*"baseline for the paper", "enter")
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).note
                    == "baseline for the paper", 5, "the note saved")
        await pilot.press("slash", *"tag:best", "enter")
        await until(pilot, lambda: screen.order == [ids["ce-base"]], 5, "the tag filter")
        await pilot.press("slash", "ctrl+u", *"method:ce", "enter")
        await until(pilot, lambda: len(screen.order) == 3, 5, "the method filter")
        await pilot.press("s", "s", "s")
        assert screen.sort_name == "acc"
    # a new session on the same records: the same filter and sort
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot, until)
        assert screen.filter_text == "method:ce" and screen.sort_name == "acc"
        assert screen.query_one("#filter", Input).value == "method:ce"
        await until(pilot, lambda: len(screen.order) == 3, 5, "the filter applied")
        # tags set elsewhere (mfm tag) reach the table too
        make_services().set_tags(ids["ce-broken"], add=["flaky"])
        await pilot.press("slash", "ctrl+u", *"tag:flaky", "enter")
        await until(pilot, lambda: screen.order == [ids["ce-broken"]], 10,
                    "a tag set elsewhere")


async def test_sort_by_a_column_header(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot, until)
        table = screen.query_one("#runs", DataTable)
        table.post_message(DataTable.HeaderSelected(table, table.columns["name"].key, 2,
                                                    table.columns["name"].label))
        await until(pilot, lambda: screen.sort_name == "name", 5, "the sort")
        names = [screen.records[r].name for r in screen.order]
        assert names == sorted(names)


async def test_the_log_pane_follows_a_running_run(fixed_db, make_app, until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await loaded(pilot, until)
        await select(pilot, until, ids["mfm-live"])
        await pilot.press("l")
        log = screen.query_one("#runs-log", Log)
        await until(pilot, lambda: log.line_count >= 3, 5, "the log so far")
        assert "epoch 3: acc" in log.lines[2]
        path = fixed_db["runs"] / str(ids["mfm-live"]) / "run.log"
        with open(path, "a") as f:
            f.write("epoch 4: acc 0.740\n")
        await until(pilot, lambda: any("epoch 4" in ln for ln in log.lines), 5,
                    "the new line")
        assert sum("epoch 1:" in ln for ln in log.lines) == 1  # read incrementally
        await pilot.press("l")
        assert not screen.query_one("#log-pane").display


# -- snapshots at 80x23, 80x24 and 120x40 -------------------------------------------------------

async def _settle(pilot, predicate, what: str, timeout: float = 10.0) -> None:
    """Wait for ``predicate``, then stop cursors blinking (snap_compare lets the app go idle
    once more before it takes the picture)."""
    await wait_for(pilot, predicate, timeout, what)
    steady_cursors(pilot.app)


def _ready(app) -> bool:
    return app.db_ready and app.status_info is not None and getattr(app.screen, "polls", 2) > 1


@pytest.mark.parametrize("size", [(80, 23), (80, 24), (120, 40)],
                         ids=["80x23", "80x24", "120x40"])
def test_snapshot_runs(fixed_db, make_app, snap_compare, size):
    async def run_before(pilot):
        await _settle(pilot, lambda: _ready(pilot.app), "the runs table")

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 23), (80, 24), (120, 40)],
                         ids=["80x23", "80x24", "120x40"])
def test_snapshot_run_curves(fixed_db, make_app, snap_compare, size):
    async def run_before(pilot):
        app = pilot.app
        await _settle(pilot, lambda: _ready(app), "the runs table")
        app.push_screen(RunScreen(2))
        await _settle(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls > 1,
                      "the run screen")

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 23), (80, 24), (120, 40)],
                         ids=["80x23", "80x24", "120x40"])
def test_snapshot_compare_difference(fixed_db, make_app, snap_compare, size):
    async def run_before(pilot):
        app = pilot.app
        await _settle(pilot, lambda: _ready(app), "the runs table")
        app.push_screen(CompareScreen([1, 5]))
        await _settle(pilot, lambda: isinstance(app.screen, CompareScreen)
                      and app.screen.polls > 0, "the compare screen")
        await show_tab(pilot, "diff")

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_snapshot_help_80x24(fixed_db, make_app, snap_compare):
    async def run_before(pilot):
        await _settle(pilot, lambda: _ready(pilot.app), "the runs table")
        await pilot.press("question_mark")
        await _settle(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), "the help")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)
