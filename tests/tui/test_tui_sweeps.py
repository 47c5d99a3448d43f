"""Pilot tests of the sweeps screen (progress, the live arm table, per-class of one and two
arms, an arm's runs) and of queueing a sweep (from a file, from the built form, errors)
against a real SQLite file. No supervisor is started: nothing trains."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Select, TextArea
from tui.pilot_wait import show_tab, wait_for

from mfm_tui.screens.arm_runs import ArmRunsScreen
from mfm_tui.screens.confirm import ConfirmScreen
from mfm_tui.screens.new_sweep import NewSweepScreen
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.sweeps import SweepsScreen
from mfm_tui.widgets.charts import ClassChart

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow

TRAIN = [300, 180, 108, 65, 39, 23, 14, 8, 5, 3]  # as conftest's fixed runs, head to tail
TINY_CONFIG = {"model": {"name": "resnet_tiny"}, "train": {"epochs": 1}, "device": "cpu"}

SIZES = [(80, 24), (120, 40)]

BASE = """
device = "cpu"
[data]
name = "digits"
imbalance_factor = 10
[model]
name = "resnet_tiny"
[train]
epochs = 2
"""
STUDY = 'name = "study"\n' + BASE + """
[grid]
"method.name" = ["ce", "balanced_softmax"]
seed = [0, 1, 2]
"""
OTHER = 'name = "other"\n' + BASE + """
[grid]
"method.name" = ["focal"]
seed = [0]
"""
# per arm and seed: (status, final acc); a class-accuracy vector follows from the acc
STATES = {("ce", 0): ("completed", 0.70), ("ce", 1): ("completed", 0.72),
          ("ce", 2): ("completed", 0.74), ("balanced_softmax", 0): ("completed", 0.80),
          ("balanced_softmax", 1): ("running", None), ("balanced_softmax", 2): ("queued", None),
          ("focal", 0): ("failed", None)}


def class_vector(acc: float, arm: str) -> list[float]:
    """Ten classes head to tail: the tail lower, less so for balanced softmax."""
    slope = 0.02 if arm == "balanced_softmax" else 0.06
    return [acc + slope * (4.5 - c) for c in range(10)]


def finish(db: Any, run_id: int, acc: float, arm: str) -> None:
    """Bring a running run to completed with a summary and a per-class vector."""
    from mfm.store import queue, repo

    vec = class_vector(acc, arm)
    repo.log_epoch(db, run_id, 1, {"acc": acc}, vec)
    repo.update_run(db, run_id, epoch=1, summary={
        "final": {"acc": acc, "many": vec[0], "medium": vec[4], "few": vec[9]},
        "best": {"acc": acc}, "seconds_per_epoch": 1.5})
    assert queue.transition(db, run_id, "completed", allowed_from=("running",))


def record_sweep(db: Any, text: str) -> dict[tuple[str, int], int]:
    """Plan a sweep, record each cell's run in its STATES state, link them, as the
    product's own paths do (tests/sweeps, bench/sweep_speed.py)."""
    from mfm.runner.launch import code_version
    from mfm.store import queue, repo
    from mfm.store import sweeps as sweep_store
    from mfm.sweeps.plan import plan_sweep
    from mfm.sweeps.spec import parse_sweep

    version = code_version()  # this checkout's: the TUI's plans reuse these runs
    plan = plan_sweep(db, parse_sweep(tomllib.loads(text), text=text), code_version=version)
    rec = sweep_store.save_sweep(db, name=plan.spec.name, file_text=text, grid=plan.grid(),
                                 code_version=version)
    ids: dict[tuple[str, int], int] = {}
    planned = []
    for c in plan.cells:
        status, acc = STATES[(c.cell.arm, c.cell.seed)]
        rid = queue.enqueue_run(db, config=c.cell.resolved, epochs_total=2,
                                name=f"{plan.spec.name} · {c.cell.arm} · seed {c.cell.seed}",
                                code_version=version)
        if status != "queued":
            assert queue.transition(db, rid, "starting", allowed_from=("queued",))
            assert queue.transition(db, rid, "running", allowed_from=("starting",))
            repo.update_run(db, rid, class_counts={
                "classes": [f"c{k}" for k in range(10)], "train": TRAIN,
                "meta": [10] * 10, "test": [50] * 10})
        if status == "completed":
            finish(db, rid, acc, c.cell.arm)
        elif status == "failed":
            assert queue.transition(db, rid, "failed", allowed_from=("running",))
        ids[(c.cell.arm, c.cell.seed)] = rid
        planned.append(sweep_store.PlannedCell(idx=c.cell.index, arm=c.cell.arm,
                                               seed=c.cell.seed, config_hash=c.config_hash,
                                               run_id=rid))
    sweep_store.set_cells(db, rec.id, planned)
    return ids


@pytest.fixture
def sweeps_db(tui_env: dict[str, Any]) -> dict[str, Any]:
    from mfm.store import Database, repo

    with Database(str(tui_env["db"])) as db:
        repo.save_dataset_spec(db, "digits-if10", {"data": {"name": "digits",
                                                            "imbalance_factor": 10.0}})
        repo.save_config(db, "tiny-ce", {"method": {"name": "ce"}, **TINY_CONFIG})
        other = record_sweep(db, OTHER)   # recorded first: the study is the newest
        study = record_sweep(db, STUDY)
    import sqlite3  # fixed times for snapshots (save_sweep stamps the wall clock)

    with sqlite3.connect(tui_env["db"]) as con:
        con.execute("UPDATE sweeps SET updated_at = 1700000000 + 60 * id, "
                    "created_at = 1700000000 + 60 * id")
    con.close()
    return {**tui_env, "ids": {**study, **other}}


def rows(app: Any, table_id: str, screen: Any = None) -> list[list[str]]:
    table = (screen or app.screen).query_one(table_id, DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def arm_row(app: Any, arm: str) -> list[str] | None:
    return next((r for r in rows(app, "#arm-table") if r[1] == arm), None)


async def open_sweeps(pilot: Any, until: Any) -> SweepsScreen:
    app = pilot.app
    await until(pilot, lambda: app.db_ready, 10, "the records")
    await pilot.press("w")
    await until(pilot, lambda: isinstance(app.screen, SweepsScreen)
                and app.screen.details >= 1, 10, "the sweeps screen with a sweep's table")
    return app.screen


async def cursor_to_arm(pilot: Any, arm: str) -> None:
    screen = pilot.app.screen
    table = screen.query_one("#arm-table", DataTable)
    table.move_cursor(row=[r.arm for r in screen.rows].index(arm))
    await wait_for(pilot, lambda: screen.current_arm() == arm, 5, f"the cursor on arm {arm}")


def counts(db_path: Path) -> tuple[int, int]:
    """(sweeps, runs) in the records."""
    from mfm.store import Database, repo
    from mfm.store import sweeps as sweep_store

    with Database(str(db_path)) as db:
        return len(sweep_store.list_sweeps(db)), len(repo.list_runs(db))


# -- the form's text ---------------------------------------------------------------------------

def test_axes_lines_become_a_sweep_file_that_parses_back():
    from mfm_tui.sweep_text import AxesError, build_sweep, parse_axes

    base, axes = parse_axes('# a comment\nmethod.name = ce, balanced_softmax\n\nseed = 0, 1\n'
                            'train.epochs = 2\noptim.milestones = [0.5, 0.75], [0.3, 0.6]\n'
                            'data.name = "digits"')
    assert base == {"train.epochs": 2, "data.name": "digits"}
    assert axes == {"method.name": ["ce", "balanced_softmax"], "seed": [0, 1],
                    "optim.milestones": [[0.5, 0.75], [0.3, 0.6]]}
    spec = build_sweep("s", dataset="digits-if10", config="tiny-ce@1",
                       axes_text="method.name = ce, mfm\nseed = 0, 1\ntrain.epochs = 2")
    assert spec.name == "s" and spec.dataset == "digits-if10" and spec.config == "tiny-ce@1"
    assert spec.grid == {"method.name": ["ce", "mfm"], "seed": [0, 1]}
    assert spec.base == {"train": {"epochs": 2}}
    assert tomllib.loads(spec.text)["grid"]["seed"] == [0, 1]
    for text, words in (("method.nmae = ce, mfm", "did you mean method.name"),
                        ("seed 0, 1", "expected key = value"),
                        ("seed = 0,, 1", "an empty value"),
                        ("seed = 0, 1\nseed = 2, 3", "given twice")):
        with pytest.raises(AxesError, match=words):
            parse_axes(text)
    with pytest.raises(AxesError, match="needs a name"):
        build_sweep(" ", dataset=None, config=None, axes_text="seed = 0, 1")


# -- the sweeps screen --------------------------------------------------------------------------

@pytest.mark.parametrize("size", SIZES)
async def test_sweeps_list_shows_progress_and_the_arm_table_the_means(sweeps_db, make_app,
                                                                      until, size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = await open_sweeps(pilot, until)
        listed = rows(app, "#sweep-list")
        # id, name, bar, done/cells, running, queued, failed, updated; newest first
        assert [r[1] for r in listed] == ["study", "other"]
        assert listed[0][3:7] == ["4/6", "1", "1", "0"]
        assert listed[1][3:7] == ["0/1", "0", "0", "1"]
        assert screen.selected == int(listed[0][0])
        ce = arm_row(app, "ce")
        assert ce is not None and ce[2] == "3/3"
        assert ce[3] == "72.0 ± 2.0"   # 70, 72, 74 over three seeds
        assert ce[-1] == "1.50"         # s/epoch
        bs = arm_row(app, "balanced_softmax")
        assert bs is not None and bs[2] == "1/3" and bs[3] == "80.0"  # one seed: no spread
        assert "val %" not in [str(c.label) for c in
                               screen.query_one("#arm-table", DataTable).columns.values()]
        assert "study" in str(screen.query_one("#sw-title").render())
        # the other sweep: its (failed) cell, no finished run
        screen.query_one("#sweep-list", DataTable).move_cursor(row=1)
        await until(pilot, lambda: arm_row(app, "focal") is not None, 5, "the other sweep")
        assert arm_row(app, "focal")[2:4] == ["0/1", "—"]


async def test_a_run_finishing_updates_the_table_on_the_next_poll(sweeps_db, make_app, until):
    from mfm.store import Database

    ids = sweeps_db["ids"]
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_sweeps(pilot, until)
        before = screen.details
        polls = screen.polls
        await until(pilot, lambda: screen.polls >= polls + 2, 10, "two more polls")
        assert screen.details == before  # nothing changed: the cells were not read again
        with Database(str(sweeps_db["db"])) as db:
            finish(db, ids[("balanced_softmax", 1)], 0.84, "balanced_softmax")
        await until(pilot, lambda: (arm_row(app, "balanced_softmax") or [""] * 4)[2] == "2/3",
                    10, "the finished run in the arm table")
        assert arm_row(app, "balanced_softmax")[3] == "82.0 ± 2.8"
        assert rows(app, "#sweep-list")[0][3:6] == ["5/6", "0", "1"]


@pytest.mark.parametrize("size", SIZES)
async def test_per_class_of_one_arm_and_of_two_side_by_side(sweeps_db, make_app, until, size):
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = await open_sweeps(pilot, until)
        screen.query_one("#arm-table", DataTable).focus()
        await cursor_to_arm(pilot, "ce")
        await pilot.press("p")
        assert screen.query_one("#sw-tabs").active == "classes"
        table = rows(app, "#class-table")
        assert len(table) == 10
        assert [r[1] for r in table] == [str(n) for n in TRAIN]  # head to tail
        assert table[0][0] == "c0" and table[0][2] == "99.0 ± 2.0"
        assert table[9][2] == "45.0 ± 2.0"
        # two arms: mark both, side by side with their difference
        await cursor_to_arm(pilot, "ce")
        await pilot.press("space")
        await cursor_to_arm(pilot, "balanced_softmax")
        await pilot.press("space")
        assert screen.marked == ["ce", "balanced_softmax"]
        assert arm_row(app, "ce")[0] == "●"
        await pilot.press("p")
        table = rows(app, "#class-table")
        assert len(table[0]) == 5
        assert table[0][3] == "89.0" and table[0][4] == "-10.0"   # one bs seed: no spread
        assert table[9][3] == "71.0" and table[9][4] == "+26.0"
        assert "balanced_softmax" in str(screen.query_one("#class-title").render())
        await pilot.press("right_square_bracket")
        assert screen.query_one("#sw-tabs").active == "chart"
        chart = screen.query_one("#sw-class-chart", ClassChart)
        assert chart.train == TRAIN and set(chart.accs) == {"ce", "balanced_softmax"}
        assert chart.accs["ce"][9] == pytest.approx(0.45)
        await show_tab(pilot, "arms", "#sw-tabs")


async def test_open_an_arms_runs_and_a_run(sweeps_db, make_app, until):
    ids = sweeps_db["ids"]
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sweeps(pilot, until)
        screen.query_one("#arm-table", DataTable).focus()
        await cursor_to_arm(pilot, "balanced_softmax")
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, ArmRunsScreen) and app.screen.polls,
                    5, "the arm's runs")
        listed = rows(app, "#arm-runs")
        assert [r[0] for r in listed] == ["0", "1", "2"]
        assert [int(r[1]) for r in listed] == [ids[("balanced_softmax", s)] for s in range(3)]
        assert listed[0][3] == "completed" and listed[1][3].startswith("running")
        assert listed[2][3].startswith("queued")
        assert app.screen.check_action("compare", ()) is True
        await pilot.press("down", "enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls, 5,
                    "the run screen")
        assert app.screen.run_id == ids[("balanced_softmax", 1)]
        await pilot.press("escape")
        assert isinstance(app.screen, ArmRunsScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, SweepsScreen)
        await pilot.press("escape")  # back to the runs
        from mfm_tui.screens.runs import RunsScreen
        assert isinstance(app.screen, RunsScreen)


# -- queueing -----------------------------------------------------------------------------------

async def new_sweep_form(pilot: Any, until: Any) -> NewSweepScreen:
    app = pilot.app
    await open_sweeps(pilot, until)
    await pilot.press("n")
    await until(pilot, lambda: isinstance(app.screen, NewSweepScreen)
                and app.screen.configs, 5, "the new sweep form with its lists")
    return app.screen


async def confirm_and_wait(pilot: Any, until: Any, form: NewSweepScreen) -> SweepsScreen:
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), 10, "the confirmation")
    await pilot.press("y")
    await until(pilot, lambda: isinstance(app.screen, SweepsScreen), 10, "the sweep queued")
    return app.screen


@pytest.mark.parametrize("size", SIZES)
async def test_queue_a_sweep_file_shows_the_plan_then_queues(sweeps_db, make_app, until,
                                                             size):
    from mfm.store import Database
    from mfm.store import sweeps as sweep_store

    ids = sweeps_db["ids"]
    path = sweeps_db["tmp"] / "more.toml"
    path.write_text('name = "more"\n' + BASE + """
[grid]
"method.name" = ["ce", "focal"]
seed = [0, 1, 2]
""")
    before = counts(sweeps_db["db"])
    app = make_app()
    async with app.run_test(size=size) as pilot:
        form = await new_sweep_form(pilot, until)
        form.query_one("#sw-file", Input).value = str(path)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: form.plans == 1, 10, "the plan")
        # the plan, before anything is recorded: ce's three cells answered by the study's
        # runs, focal's seed 0 by the other sweep's failed run (left to a resume), two to run
        plan = str(form.query_one("#sw-plan").render())
        assert "6 cells in 2 arms" in plan and "3 reused;" in plan and "1 failed" in plan
        assert "2 to run" in plan
        assert "no comparable run timed yet" in plan  # focal was never timed
        actions = [r[3] for r in rows(app, "#sw-plan-table", form)]
        assert actions == ["reuse"] * 3 + ["failed", "new", "new"]
        assert isinstance(app.screen, ConfirmScreen)
        assert "3 reused" in str(app.screen.query_one("#question").render())
        assert counts(sweeps_db["db"]) == before  # nothing recorded yet
        screen = await confirm_and_wait(pilot, until, form)
        await until(pilot, lambda: screen.current_sweep() is not None
                    and screen.current_sweep().name == "more" and arm_row(app, "focal"), 10,
                    "the new sweep chosen")
        assert arm_row(app, "ce")[2] == "3/3" and arm_row(app, "focal")[2] == "0/3"
        assert arm_row(app, "ce")[3] == "72.0 ± 2.0"
    with Database(str(sweeps_db["db"])) as db:
        rec = sweep_store.get_sweep(db, "more")
        cells = sweep_store.sweep_cells(db, rec.id)
    assert all(c.run is not None for c in cells)  # every cell linked
    assert [c.run.id for c in cells if c.arm == "ce"] == [ids[("ce", s)] for s in range(3)]
    focal = [c.run for c in cells if c.arm == "focal"]
    assert focal[0].id == ids[("focal", 0)] and focal[0].status == "failed"
    assert {r.status for r in focal[1:]} == {"queued"}
    assert all(r.id not in ids.values() for r in focal[1:])
    assert counts(sweeps_db["db"]) == (before[0] + 1, before[1] + 2)


@pytest.mark.parametrize("size", SIZES)
async def test_queue_a_sweep_built_from_a_spec_a_config_and_axes(sweeps_db, make_app, until,
                                                                 size):
    from mfm.store import Database
    from mfm.store import sweeps as sweep_store

    before = counts(sweeps_db["db"])
    app = make_app()
    async with app.run_test(size=size) as pilot:
        form = await new_sweep_form(pilot, until)
        form.query_one("#sw-source", Select).value = "build"
        await until(pilot, lambda: form.query_one("#sw-axes").display
                    and not form.query_one("#sw-file-row").display, 5, "the axes shown")
        form.query_one("#sw-name", Input).value = "built"
        spec_id = next(i for i, r in form.specs.items() if r.name == "digits-if10")
        cfg_id = next(i for i, r in form.configs.items() if r.name == "tiny-ce")
        form.query_one("#sw-spec", Select).value = spec_id
        form.query_one("#sw-config", Select).value = cfg_id
        form.query_one("#sw-axes", TextArea).text = ("method.name = ce, balanced_softmax\n"
                                                     "seed = 0, 1\n")
        await until(pilot, lambda: "2 axes" in str(form.query_one("#sw-plan").render()), 5,
                    "the built sweep to parse")
        assert not form.query_one("#sw-error").display
        await pilot.press("ctrl+s")
        await until(pilot, lambda: form.plans == 1, 10, "the plan")
        plan = str(form.query_one("#sw-plan").render())
        assert "4 cells in 2 arms" in plan and "4 to run" in plan
        assert [r[1] for r in rows(app, "#sw-plan-table", form)] == ["ce", "ce", "balanced_softmax",
                                                               "balanced_softmax"]
        assert counts(sweeps_db["db"]) == before
        await confirm_and_wait(pilot, until, form)
    with Database(str(sweeps_db["db"])) as db:
        rec = sweep_store.get_sweep(db, "built")
        cells = sweep_store.sweep_cells(db, rec.id)
    assert 'dataset = "digits-if10"' in rec.file_text and 'config = "tiny-ce@1"' in rec.file_text
    assert len(cells) == 4 and {c.run.status for c in cells} == {"queued"}
    # the saved spec's data and the saved config's model reached the runs
    assert {c.run.config["model"]["name"] for c in cells} == {"resnet_tiny"}
    assert {c.run.config["data"]["imbalance_factor"] for c in cells} == {10.0}
    assert counts(sweeps_db["db"]) == (before[0] + 1, before[1] + 4)


async def test_a_bad_axis_or_cell_shows_one_line_and_records_nothing(sweeps_db, make_app,
                                                                     until):
    before = counts(sweeps_db["db"])
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        form = await new_sweep_form(pilot, until)
        form.query_one("#sw-source", Select).value = "build"
        form.query_one("#sw-name", Input).value = "bad"
        form.query_one("#sw-axes", TextArea).text = "method.nmae = ce, mfm\n"
        error = form.query_one("#sw-error")
        await until(pilot, lambda: error.display, 5, "the inline error")
        text = str(error.render())
        assert "unknown key 'method.nmae'" in text and "method.name" in text
        assert "\n" not in text.strip()
        await pilot.press("ctrl+s")
        await until(pilot, lambda: any("nothing was planned" in n.message for n in app.notices),
                    5, "the refusal")
        assert form.plans == 0 and isinstance(app.screen, NewSweepScreen)
        # a cell the config rules refuse: planning names it; nothing is recorded
        form.query_one("#sw-axes", TextArea).text = "optim.lr = 0.1, -1\n"
        await until(pilot, lambda: not error.display, 5, "the line to parse")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: error.display and "not planned" in str(error.render()), 10,
                    "the planning error")
        assert "cell 2" in str(error.render()) and "optim.lr" in str(error.render())
        assert not isinstance(app.screen, ConfirmScreen)
        # a missing file
        form.query_one("#sw-source", Select).value = "file"
        form.query_one("#sw-file", Input).value = str(sweeps_db["tmp"] / "nope.toml")
        await until(pilot, lambda: form.query_one("#sw-file-row").display
                    and not form.query_one("#sw-axes").display, 5, "the file field shown")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: error.display and "no file" in str(error.render()), 10,
                    "the file error")
    assert counts(sweeps_db["db"]) == before


# -- snapshots ----------------------------------------------------------------------------------

async def _settle(pilot: Any, until: Any, predicate: Any, what: str) -> None:
    """Wait for ``predicate`` (snap_compare lets the app go idle once more before it takes the
    picture)."""
    await until(pilot, predicate, 10, what)


def test_snapshot_sweeps_screen_at_80x24(sweeps_db, make_app, until, snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await _settle(pilot, until, lambda: app.db_ready and app.status_info is not None, "records")
        await pilot.press("f4")
        await _settle(pilot, until, lambda: getattr(app.screen, "details", 0) >= 1
                      and app.screen.polls > 1, "the arm table")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=run_before)


def test_snapshot_per_class_of_two_arms_at_120x40(sweeps_db, make_app, until,
                                                  snap_compare):
    async def run_before(pilot):
        app = pilot.app
        await _settle(pilot, until, lambda: app.db_ready and app.status_info is not None, "records")
        await pilot.press("f4")
        await _settle(pilot, until, lambda: getattr(app.screen, "details", 0) >= 1
                      and app.screen.polls > 1, "the arm table")
        app.screen.query_one("#arm-table", DataTable).focus()
        await pilot.press("space", "down", "space", "p")
        await until(pilot, lambda: len(app.screen.marked) == 2
                    and app.screen.query_one("TabPane#classes").region, 10,
                    "two arms' per-class table")

    assert snap_compare(make_app(), terminal_size=(120, 40), run_before=run_before)
