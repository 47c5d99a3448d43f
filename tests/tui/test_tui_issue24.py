"""What a new user trips on (issue 24), each on a real SQLite file driven by Pilot: charts
that keep their height on an 80x23 terminal, a dropdown that stays above the footer, the
dataset preview's legend off the bars, help that opens on the screen's own keys, per-class
numbers never cut, the Config tab as TOML that reads back, and the new-run form's override
errors in the CLI's words."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from textual.geometry import Region
from textual.widgets import DataTable, Input, Static
from tui.pilot_wait import focus, show_tab, wait_for

from mfm_tui.screens.compare import CompareScreen
from mfm_tui.screens.configs import ConfigsScreen
from mfm_tui.screens.datasets import DatasetsScreen
from mfm_tui.screens.help import HelpScreen
from mfm_tui.screens.new_run import NewRunScreen
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.sweeps import SweepsScreen
from mfm_tui.widgets.chart_stack import MIN_ROWS
from mfm_tui.widgets.form import FormSelect

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow


def drawn(widget: Any) -> list[str]:
    """The lines a widget draws now (its own render_lines over its whole size)."""
    w, h = widget.size
    return [strip.text for strip in widget.render_lines(Region(0, 0, w, h))]


async def runs_loaded(pilot: Any) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: app.db_ready and getattr(app.screen, "polls", 0) > 0, 10,
                   "the runs table")


def on_screen(widget: Any) -> Region:
    """The part of the widget's region in view: inside its scroll area (a ChartStack)."""
    from mfm_tui.widgets.chart_stack import ChartStack

    view = next((a for a in widget.ancestors if isinstance(a, ChartStack)), widget.screen)
    return widget.region.intersection(view.region)


# -- 1. charts at 80x23 ------------------------------------------------------------------------

# the heights of today's layout at 160x45 (loss/acc on the run screen, curves of compare)
TALL = {"#loss-chart": 20, "#acc-chart": 20, "#cmp-acc": 20, "#cmp-loss": 20}


async def test_at_80x23_each_curve_has_the_height_there_is_and_bracket_reaches_the_next(
        fixed_db, make_app):
    app = make_app()
    async with app.run_test(size=(80, 23)) as pilot:
        await runs_loaded(pilot)
        app.push_screen(RunScreen(fixed_db["ids"]["mfm-live"]))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls,
                       10, "the run screen")
        screen = app.screen
        loss, acc = screen.query_one("#loss-chart"), screen.query_one("#acc-chart")
        await wait_for(pilot, lambda: on_screen(loss).height >= MIN_ROWS, 5,
                       "the loss chart at full height")
        top = on_screen(loss).y
        assert not on_screen(acc).height  # one chart in view: the next one is a page away
        assert "(1 of 2, ] next)" in drawn(loss)[0]
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: on_screen(acc).height >= MIN_ROWS
                       and on_screen(acc).y == top, 5, "the accuracy chart in view")
        assert screen.query_one("#tabs").active == "curves"
        assert "(2 of 2, [ back)" in drawn(acc)[0]
        await pilot.press("right_square_bracket")
        assert screen.query_one("#tabs").active == "classes"
        await pilot.press("left_square_bracket")
        assert screen.query_one("#tabs").active == "curves"
        # compare: the same
        app.pop_screen()
        app.push_screen(CompareScreen([1, 5]))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen)
                       and app.screen.polls, 10, "the compare screen")
        cmp_acc = app.screen.query_one("#cmp-acc")
        await wait_for(pilot, lambda: on_screen(cmp_acc).height >= MIN_ROWS, 5,
                       "compare's accuracy chart at full height")
        await pilot.press("right_square_bracket")
        cmp_loss = app.screen.query_one("#cmp-loss")
        await wait_for(pilot, lambda: on_screen(cmp_loss).height >= MIN_ROWS, 5,
                       "compare's loss chart in view")


async def test_compare_per_class_of_four_runs_at_80x23_is_one_row_of_charts_a_page(
        fixed_db, make_app):
    app = make_app()
    async with app.run_test(size=(80, 23)) as pilot:
        await runs_loaded(pilot)
        app.push_screen(CompareScreen([1, 2, 3, 5]))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen)
                       and app.screen.polls, 10, "the compare screen")
        await show_tab(pilot, "classes")
        first = app.screen.query_one("#cmp-class-1")
        await wait_for(pilot, lambda: on_screen(first).height >= MIN_ROWS, 5,
                       "the first row of per-class charts at full height")
        await pilot.press("right_square_bracket")
        third = app.screen.query_one("#cmp-class-3")
        await wait_for(pilot, lambda: on_screen(third).height >= MIN_ROWS, 5,
                       "the second row in view")
        assert app.screen.query_one("#tabs").active == "classes"


@pytest.mark.parametrize("size", [(160, 45), (120, 40)])
async def test_tall_terminals_keep_both_curves_in_view_at_least_as_tall_as_before(
        fixed_db, make_app, size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await runs_loaded(pilot)
        app.push_screen(RunScreen(fixed_db["ids"]["mfm-live"]))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls,
                       10, "the run screen")
        loss, acc = app.screen.query_one("#loss-chart"), app.screen.query_one("#acc-chart")
        await wait_for(pilot, lambda: on_screen(loss).height and on_screen(acc).height, 5,
                       "both curves in view")
        floor = 20 if size == (160, 45) else 17
        assert on_screen(loss).height >= floor and on_screen(acc).height >= floor
        assert "of 2" not in drawn(loss)[0]
        app.pop_screen()
        app.push_screen(CompareScreen([1, 5]))
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen)
                       and app.screen.polls, 10, "the compare screen")
        a, b = app.screen.query_one("#cmp-acc"), app.screen.query_one("#cmp-loss")
        await wait_for(pilot, lambda: on_screen(a).height and on_screen(b).height, 5,
                       "both compare curves in view")
        assert on_screen(a).height >= floor and on_screen(b).height >= floor


# -- 2. the dropdown, the preview's legend, help ------------------------------------------------

@pytest.mark.parametrize("size", [(80, 23), (100, 30)])
async def test_an_open_dropdown_low_in_the_configs_form_stays_above_the_footer(
        fixed_db, make_app, size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await runs_loaded(pilot)
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigsScreen), 5, "the form")
        screen = app.screen
        form = screen.query_one("#cfg-form")
        await wait_for(pilot, lambda: form.region.height > 0, 5, "the form laid out")
        shown = [s for s in screen.query(FormSelect) if s.parent.parent.display]
        sel = shown[-1]  # the last dropdown of the form, scrolled to the bottom of the view
        await focus(pilot, sel)
        # scroll so that the dropdown's row is the form's last visible row (as far as the
        # form can scroll): the list it opens has no room below it
        form.scroll_to_widget(sel, animate=False)
        await wait_for(pilot, lambda: sel.region.height, 5, "the dropdown in view")
        view = form.scrollable_content_region
        target = round(sel.region.bottom - view.y + form.scroll_y - view.height)
        form.scroll_to(y=max(0, min(target, form.max_scroll_y)), animate=False)
        await wait_for(pilot, lambda: sel.region.height, 5, "the dropdown in view")
        if 0 <= target <= form.max_scroll_y:
            await wait_for(pilot, lambda: sel.region.bottom >= form.region.bottom - 2, 5,
                           "the dropdown low in the form")
        await pilot.press("enter")
        overlay = sel.query_one("SelectOverlay")
        await wait_for(pilot, lambda: sel.expanded and overlay.region.height, 5, "the list open")
        await pilot.pause()
        footer_top = min(w.region.y for w in screen.query("StatusBar, KeysBar"))
        assert overlay.region.bottom <= footer_top, (overlay.region, footer_top)
        assert overlay.region.bottom <= form.region.bottom
        await pilot.press("escape")


async def test_the_dataset_preview_legend_is_above_the_bars(fixed_db, make_app):
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await runs_loaded(pilot)
        await pilot.press("f2")
        await wait_for(pilot, lambda: isinstance(app.screen, DatasetsScreen)
                       and app.screen.previews > 0, 10, "the preview")
        chart = app.screen.query_one("#spec-chart")
        await wait_for(pilot, lambda: chart.size.height > 0, 5, "the chart laid out")
        lines = drawn(chart)
        frame = next(i for i, line in enumerate(lines) if "┌" in line)
        legend = [i for i, line in enumerate(lines) if "train" in line and "meta" in line]
        assert legend and all(i < frame for i in legend), lines  # above the plot's frame
        for name in ("train", "meta", "test"):
            assert not any(name in line for line in lines[frame:]), (name, lines)


@pytest.mark.parametrize(("key", "screen_type", "first"), [
    (None, "RunsScreen", "New run"), ("f3", "ConfigsScreen", "Save"),
    ("f2", "DatasetsScreen", "Save"), ("f4", "SweepsScreen", "New sweep")])
async def test_help_opens_on_the_screens_own_keys(fixed_db, make_app, key, screen_type, first):
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await runs_loaded(pilot)
        if key:
            await pilot.press(key)
        await wait_for(pilot, lambda: type(app.screen).__name__ == screen_type, 5, screen_type)
        lists = app.screen.query("#cfg-list, #spec-list")
        if lists:  # a form's name field has the focus: ? would be typed there
            await focus(pilot, lists.first())
        own = [b.description for b in type(app.screen).BINDINGS if b.description]
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), 5, "the help")
        help_keys = app.screen.query_one("#help-keys", Static)
        await wait_for(pilot, lambda: help_keys.region.height, 5, "the keys drawn")
        text = [line.strip() for line in drawn(help_keys)]
        assert text[0] == "this screen:"
        assert text[1].endswith(first), text[:3]
        body = text[1:1 + len(own)]
        assert all(any(line.endswith(d) or f"{d}  (not now)" in line for line in body)
                   for d in own), (own, body)
        assert "Cursor up" not in "\n".join(text[:1 + len(own)])


# -- 3. per-class numbers never cut --------------------------------------------------------------

@pytest.fixture
def full_marks_db(tui_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The sweeps of test_tui_sweeps, every finished run at 100% on its head class and 98%
    on the next (three ce seeds: "100.0 ± 0.0"; one balanced_softmax seed: "100.0")."""
    import tui.test_tui_sweeps as sweeps

    from mfm.store import Database

    monkeypatch.setattr(sweeps, "class_vector",
                        lambda acc, arm: [1.0, 0.98] + [acc - 0.01 * c for c in range(8)])
    with Database(str(tui_env["db"])) as db:
        ids = sweeps.record_sweep(db, sweeps.STUDY)
    return {**tui_env, "ids": ids}


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 45)])
@pytest.mark.parametrize("arms", [("ce",), ("balanced_softmax",), ("ce", "balanced_softmax")])
async def test_per_class_numbers_are_never_cut(full_marks_db, make_app, size, arms):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.db_ready, 10, "the records")
        await pilot.press("f4")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepsScreen)
                       and app.screen.details >= 1, 10, "the sweeps screen")
        screen = app.screen
        arm_table = screen.query_one("#arm-table", DataTable)
        arm_table.focus()
        for arm in arms:
            arm_table.move_cursor(row=[r.arm for r in screen.rows].index(arm))
            await wait_for(pilot, lambda arm=arm: screen.current_arm() == arm, 5, arm)
            if len(arms) == 2:
                await pilot.press("space")
        await pilot.press("p")
        table = screen.query_one("#class-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 10 and table.region.height > 3, 5,
                       "the per-class table")
        cells = [[str(c) for c in table.get_row_at(i)] for i in range(2)]
        expected = "100.0 ± 0.0" if arms[0] == "ce" else "100.0"
        assert cells[0][2] == expected and cells[1][2] == expected.replace("100.0", "98.0")

        def all_drawn() -> bool:
            lines = drawn(table)
            return all(cell in lines[i + 1] for i in range(2) for cell in cells[i])

        await wait_for(pilot, all_drawn, 5, f"every cell drawn in full: {cells}")
        assert table.max_scroll_x == 0  # nothing out of view to the right either
        # a poll re-fills the open table (a run finished): a frame drawn before the table
        # measured its new rows must not cut them, nor leave them cut (DataTable keeps each
        # cell's rendering until its next change: a width measured later does not redraw it)
        screen.refresh_classes()
        assert all_drawn(), (cells, drawn(table)[:3])
        await pilot.pause()
        await wait_for(pilot, all_drawn, 2, f"every cell still drawn in full: {cells}")


# -- 4. the Config tab is TOML -------------------------------------------------------------------

async def test_the_config_tab_is_the_toml_of_mfm_show(fixed_db, make_app):
    from mfm.store import Database, repo
    from mfm.tomltext import to_toml

    rid = fixed_db["ids"]["mfm-live"]
    with Database(str(fixed_db["db"])) as db:
        config = repo.get_run(db, rid).config
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await runs_loaded(pilot)
        app.push_screen(RunScreen(rid))
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls,
                       10, "the run screen")
        text = str(app.screen.query_one("#config-text", Static).render())
    assert text == to_toml(config)  # what mfm show ID --toml prints
    want = {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict)
                else v) for k, v in config.items() if v is not None}
    assert tomllib.loads(text) == want
    assert "False" not in text and "permute_classes = false" in text


def test_config_text_escapes_control_characters_and_still_reads_back():
    from mfm_tui.screens.run import config_text

    config = {"seed": 1, "data": {"root": "/d\x7fel\u202eevil\x1b[2J", "name": "x"}}
    text = config_text(config)
    assert all(ch == "\n" or ch.isprintable() for ch in text), repr(text)
    assert tomllib.loads(text) == config


# -- 5. the form's override errors in the CLI's words --------------------------------------------

@pytest.mark.parametrize("item", ["seed=abc", "train.epochs=two", "data.seed=1.5",
                                  "optim.lr=fast"])
async def test_the_new_run_form_says_what_mfm_run_set_says(fixed_db, make_app, item):
    from mfm.config import ConfigError, load_config

    with pytest.raises(ConfigError) as cli:
        load_config(None, [item])  # what mfm run --set ITEM checks and prints
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await runs_loaded(pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunScreen)
                       and app.screen.configs is not None, 10, "the form")
        form = app.screen
        field = form.query_one("#nr-set", Input)
        await focus(pilot, field)
        await pilot.press(*item)
        await wait_for(pilot, lambda: field.value == item and form.plan is None, 5,
                       "the error")
        errors = form.check()[3]
        assert errors == [f"overrides: {cli.value}"], errors
        assert str(cli.value) in str(form.query_one("#nr-error", Static).render())
        assert "did you mean" not in "\n".join(errors)
