"""What a new user trips on in the runs screen (issue 24): tag and note editors that add to what
is there and ask before anything is lost, a filter whose field keys match whole values and say
when a value cannot be there, a stable order in which columns give way on narrow terminals
(with a hint whenever some are hidden), coloured statuses and a running run's accuracy
sparkline. Pilot tests on the fixed records of conftest."""

from __future__ import annotations

from typing import Any

import pytest
from textual.widgets import DataTable, Input

from mfm_tui.format import STATUS_STYLES, filter_problems, run_matches
from mfm_tui.screens.confirm import ConfirmScreen
from mfm_tui.screens.prompt import PromptScreen
from mfm_tui.screens.runs import TABLE_COLUMNS, TREND_STYLE, RunsScreen
from mfm_tui.widgets.sparkline import BARS, sparkline

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow

SIZE = (100, 30)


async def loaded(pilot: Any, until: Any, polls: int = 1) -> RunsScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                and pilot.app.screen.polls >= polls, 10, "the runs table to load")
    screen: RunsScreen = pilot.app.screen
    return screen


async def select(pilot: Any, until: Any, run_id: int) -> None:
    screen = pilot.app.screen
    await until(pilot, lambda: run_id in screen.order, 5, f"run {run_id} in the table")
    screen.query_one("#runs", DataTable).move_cursor(row=screen.order.index(run_id))
    await until(pilot, lambda: screen.current_id() == run_id, 5, f"run {run_id} highlighted")


async def prompt(pilot: Any, until: Any, key: str) -> Input:
    """Press ``key`` (t, e) and return the prompt's input once it has the focus."""
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, PromptScreen)
                and pilot.app.screen.query_one("#prompt-input", Input).has_focus, 5,
                "the prompt")
    field: Input = pilot.app.screen.query_one("#prompt-input", Input)
    return field


async def question(pilot: Any, until: Any) -> str:
    await until(pilot, lambda: isinstance(pilot.app.screen, ConfirmScreen)
                and pilot.app.screen.query("#question"), 5, "the question")
    return str(pilot.app.screen.query_one("#question").render())


def notified(app: Any, text: str) -> bool:
    return any(text in str(n.message) for n in app.notices)


def title(screen: RunsScreen) -> str:
    return str(screen.query_one("#runs-title").render())


# -- 1. the tag and note editors add to what is there; a loss is asked about first ------------

async def test_typing_in_the_tag_editor_adds_to_the_tags_there(fixed_db, make_app,
                                                               make_services, until):
    ids = fixed_db["ids"]
    make_services().set_tags(ids["ce-base"], add=["baseline"])  # as `mfm tag 1 --add baseline`
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        await select(pilot, until, ids["ce-base"])
        field = await prompt(pilot, until, "t")
        assert field.value == "baseline"
        assert field.selection.is_empty and field.cursor_position == len("baseline")
        await pilot.press(*" extra", "enter")
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).tags
                    == ("baseline", "extra"), 5, "the tag added")
        assert not any(isinstance(s, ConfirmScreen) for s in app.screen_stack)


async def test_removing_a_tag_asks_first_and_the_default_keeps_it(fixed_db, make_app,
                                                                   make_services, until):
    ids = fixed_db["ids"]
    make_services().set_tags(ids["ce-base"], add=["baseline", "keep"])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, until)
        await select(pilot, until, ids["ce-base"])
        field = await prompt(pilot, until, "t")
        assert field.value == "baseline keep"
        await pilot.press(*["backspace"] * 4, *"new", "enter")  # keep -> new
        text = await question(pilot, until)
        assert "Remove tag keep from run 1 (ce-base)?" in text and "new is added" in text
        await pilot.press("enter")  # the focused answer is No: keep it
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).tags
                    == ("baseline", "keep", "new"), 5, "the tag kept, the new one added")
        await until(pilot, lambda: screen.records[ids["ce-base"]].tags
                    == ("baseline", "keep", "new"), 5, "the table's record")
        # escape keeps it too; nothing else typed: nothing to save
        field = await prompt(pilot, until, "t")
        await pilot.press("ctrl+u", *"new", "enter")
        assert "Remove tags baseline, keep from run 1" in await question(pilot, until)
        await pilot.press("escape")
        await until(pilot, lambda: notified(app, "run 1: tags kept"), 5, "the notice")
        assert make_services().get_run(ids["ce-base"]).tags == ("baseline", "keep", "new")
        # yes removes
        field = await prompt(pilot, until, "t")
        await pilot.press(*["backspace"] * len(" new"), "enter")
        assert "Remove tag new from run 1" in await question(pilot, until)
        await pilot.press("y")
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).tags
                    == ("baseline", "keep"), 5, "the tag removed")


async def test_the_note_editor_appends_and_asks_before_losing_any_of_the_note(
        fixed_db, make_app, make_services, until):
    ids = fixed_db["ids"]
    make_services().set_note(ids["ce-base"], "baseline for the paper")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot, until)
        await select(pilot, until, ids["ce-base"])
        field = await prompt(pilot, until, "e")
        assert field.value == "baseline for the paper"
        assert field.selection.is_empty and field.cursor_position == len(field.value)
        await pilot.press(*", v2", "enter")  # adds: saved without a question
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).note
                    == "baseline for the paper, v2", 5, "the note appended")
        assert not any(isinstance(s, ConfirmScreen) for s in app.screen_stack)
        # shortening it asks, naming what goes; no (the default) keeps the note
        await prompt(pilot, until, "e")
        await pilot.press(*["backspace"] * len(", v2"), "enter")
        text = await question(pilot, until)
        assert "the note loses 4 characters: “, v2”" in text
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 5, "the answer")
        assert make_services().get_run(ids["ce-base"]).note == "baseline for the paper, v2"
        # replacing it: the old note is named; clearing it too; yes saves
        await prompt(pilot, until, "e")
        await pilot.press("ctrl+u", *"something else", "enter")
        assert "baseline for the paper, v2" in await question(pilot, until)
        await pilot.press("n")
        await prompt(pilot, until, "e")
        await pilot.press("ctrl+u", "enter")
        text = await question(pilot, until)
        assert "clearing it loses all 26 characters" in text
        await pilot.press("y")
        await until(pilot, lambda: make_services().get_run(ids["ce-base"]).note is None, 5,
                    "the note cleared")


# -- 2. the filter: whole values for status, method, data, tag; a notice for what cannot be -----

async def test_field_filters_match_whole_values(fixed_db, make_app, make_services, until):
    ids = fixed_db["ids"]
    make_services().set_tags(ids["ce-broken"], add=["bestest"])
    make_services().set_tags(ids["ce-base"], add=["best"])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, until)

        async def shows(text: str, expected: set[int]) -> None:
            await pilot.press("slash", "ctrl+u", *text, "enter")
            await until(pilot, lambda: set(screen.order) == expected, 5, f"filter {text!r}")

        ce = {ids["ce-base"], ids["ce-broken"], ids["waiting"]}
        await shows("method:ce", ce)  # not balanced_softmax
        await shows("METHOD:CE", ce)
        await shows("method:balanced_softmax", {ids["bs"]})
        await shows("method:ce,mfm", ce | {ids["mfm-live"]})
        await shows("status:running", {ids["mfm-live"]})
        await shows("tag:best", {ids["ce-base"]})  # not bestest
        await shows("data:digits", set(ids.values()))
        await shows("data:digits/if10 status:completed", {ids["ce-base"], ids["bs"]})
        await shows("ce", ce | {ids["bs"]})  # a free word still matches part of a field
        await shows("name:ce-b", {ids["ce-base"], ids["ce-broken"]})
        assert not any(n.title == "filter" for n in app.notices)
        await shows("status:run", set())  # no status is "run": said so
        await until(pilot, lambda: notified(app, "run is no status"), 5, "the notice")


async def test_a_value_that_cannot_be_there_gets_a_one_line_notice(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, until)
        await pilot.press("slash", *"method:zzz", "enter")
        await until(pilot, lambda: notified(app, "zzz is no method"), 5, "the notice")
        notice = next(n for n in app.notices if "zzz is no method" in str(n.message))
        assert notice.severity == "warning" and "\n" not in notice.message
        for name in ("balanced_softmax", "ce", "mfm", "focal"):  # in the records, or known
            assert name in notice.message
        assert screen.order == []
        hint = str(screen.query_one("#runs-empty").render())
        assert "zzz is no method" in hint  # the empty table says why
        await pilot.press("slash", "ctrl+u", *"tag:nope status:runing", "escape")
        await until(pilot, lambda: notified(app, "runing is no status"), 5, "the status one")
        assert notified(app, "nope is no tag of any run (tags: none yet)")


def test_run_matches_and_filter_problems(fixed_db, make_services):
    runs = {r.name: r for r in make_services().list_runs()}
    assert run_matches(runs["ce-base"], "method:ce status:completed")
    assert not run_matches(runs["bs"], "method:ce")
    assert run_matches(runs["bs"], "ce")  # free word: part of balanced_softmax
    assert run_matches(runs["bs"], "method:")  # an empty value asks for nothing
    assert run_matches(runs["mfm-live"], "id:2") and not run_matches(runs["mfm-live"], "id:22")
    assert filter_problems("method:ce status:running ce data:digits", runs.values()) == []
    [problem] = filter_problems("data:cifar", runs.values())
    assert problem == "cifar is no data set of any run (data: digits, digits/if10, if10)"


# -- 3. columns give way in a fixed order, whatever the runs' states; a hint when hidden --------

@pytest.mark.parametrize("size", [(80, 23), (60, 16), (160, 45)],
                         ids=["80x23", "60x16", "160x45"])
async def test_columns_follow_one_priority_and_the_hint_shows_whenever_some_are_hidden(
        fixed_db, make_app, until, size):
    from mfm.store import Database, repo

    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = await loaded(pilot, until)
        columns = screen.columns
        assert {"id", "name", "method", "status", "acc"} <= set(columns)
        table = screen.query_one("#runs", DataTable)
        assert table.max_scroll_x == 0
        hidden = len(TABLE_COLUMNS) - len(columns)
        if size == (80, 23):
            assert columns == ("mark", "id", "name", "method", "status", "progress", "trend",
                               "acc")
        if size == (160, 45):
            assert hidden == 0 and "hidden" not in title(screen)
        else:
            assert hidden and f"{hidden} columns hidden" in title(screen)
        # the running run ends, the queued one starts: the same columns
        with Database(str(fixed_db["db"])) as db:
            repo.update_run(db, ids["mfm-live"], status="completed",
                            finished_at=1_700_000_000.0 + 3000)
            repo.update_run(db, ids["waiting"], status="running",
                            started_at=1_700_000_000.0 + 3500, slot="cpu1", device="cpu",
                            heartbeat_at=1_700_000_000.0 + 3599)
        await until(pilot, lambda: screen.cells[ids["waiting"]][5] == "running", 5,
                    "the new states")
        assert screen.columns == columns
        assert table.max_scroll_x == 0


async def test_narrowing_drops_columns_from_the_end_of_the_priority(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=(160, 45)) as pilot:
        screen = await loaded(pilot, until)
        seen = []
        for width in (160, 120, 100, 80, 60):
            await pilot.resize_terminal(width, 30)
            await until(pilot, lambda w=width: screen.size.width == w, 5, f"width {width}")
            await until(pilot, lambda: screen.query_one("#runs", DataTable).max_scroll_x == 0,
                        5, "a table that fits")
            seen.append(set(screen.columns))
        for wider, narrower in zip(seen, seen[1:]):
            assert narrower <= wider  # a narrower window never shows a column a wider hides


# -- 4. coloured statuses and the running run's sparkline --------------------------------------

async def test_statuses_carry_their_colour(fixed_db, make_app, until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, until)
        table = screen.query_one("#runs", DataTable)
        for rid, rec in screen.records.items():
            cell = table.get_cell(str(rid), "status")
            assert cell.style == STATUS_STYLES[rec.status], rec.status
            assert table.get_cell(str(rid), "name").style == ""  # names stay plain
        assert len(set(STATUS_STYLES.values())) >= 7  # one colour per status (created=queued)


async def test_a_running_runs_sparkline_moves_with_each_new_epoch(fixed_db, make_app, until):
    from mfm.store import Database, repo

    ids = fixed_db["ids"]
    app = make_app()
    calls: list[tuple[int, int | None]] = []
    real = app.services.run_series

    def counted(run_id: int, **kw: Any) -> Any:
        calls.append((run_id, kw.get("after_epoch")))
        return real(run_id, **kw)

    app.services.run_series = counted
    async with app.run_test(size=SIZE) as pilot:
        screen = await loaded(pilot, until, polls=3)
        table = screen.query_one("#runs", DataTable)
        live = str(ids["mfm-live"])

        def trend() -> str:
            return str(table.get_cell(live, "trend"))

        before = trend()
        assert len(before) == 3 and set(before) <= set(BARS)  # three epochs so far, rising
        assert before[0] == BARS[0] and before[-1] == BARS[-1]
        assert table.get_cell(live, "trend").style == TREND_STYLE
        for name in ("ce-base", "ce-broken", "waiting", "bs"):  # only running runs have one
            assert str(table.get_cell(str(ids[name]), "trend")) == ""
        assert calls == [(ids["mfm-live"], -1)]  # read once, for the running run only
        with Database(str(fixed_db["db"])) as db:  # a heartbeat: the record changes, no epoch
            repo.update_run(db, ids["mfm-live"], heartbeat_at=1_700_000_000.0 + 3600 - 7)
        await until(pilot, lambda: screen.cells[ids["mfm-live"]][10] == "cpu0 ♥7s", 5,
                    "the heartbeat")
        assert len(calls) == 1  # nothing new to read for the sparkline
        with Database(str(fixed_db["db"])) as db:
            repo.log_epoch(db, ids["mfm-live"], 3, {"acc": 0.2}, [0.2] * 10)
        await until(pilot, lambda: trend() != before, 5, "the sparkline to move")
        assert len(trend()) == 4 and trend()[-1] == BARS[0]  # the new epoch dropped
        assert calls[1:] == [(ids["mfm-live"], 2)]  # only the new epoch read
        # the run ends: its sparkline goes
        with Database(str(fixed_db["db"])) as db:
            repo.update_run(db, ids["mfm-live"], status="completed")
        await until(pilot, lambda: trend() == "", 5, "the sparkline cleared")
        assert ids["mfm-live"] not in screen.trends


def test_sparkline_downsamples_and_scales():
    assert sparkline([], 8) == ""
    assert sparkline([1.0, 1.0], 8) == BARS[3] * 2
    assert sparkline([0.0, 0.5, 1.0], 8) == BARS[0] + BARS[4] + BARS[7]
    line = sparkline([float(i) for i in range(100)], 8)
    assert len(line) == 8 and line[0] == BARS[0] and line[-1] == BARS[-1]
    assert sparkline([0.0, float("nan"), 1.0], 8) == BARS[0] + " " + BARS[-1]
