"""Hostile names and texts in the records never reach the terminal as markup or escapes: a run
named ``[/]`` (Rich would crash on it), ``[bold]x`` (would be bold), ``red\\x1b[31mtext`` (raw
ANSI), a 500-character name (would push every other column off screen); spec and config names
that look like markup; error texts, config values and log lines holding both. The forms refuse
names ``mfm.text.check_name`` refuses, and ``mfm-tui`` ends with one line, never a traceback.

Real SQLite files, real apps driven by Pilot; waits are conditions with deadlines."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable, Input, Log, OptionList, Select

from mfm_tui.literal import NAME_CELL, NAME_LABEL
from mfm_tui.screens.compare import CompareScreen
from mfm_tui.screens.configs import ConfigsScreen
from mfm_tui.screens.confirm import ConfirmScreen
from mfm_tui.screens.datasets import DatasetsScreen
from mfm_tui.screens.new_run import NewRunScreen
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.runs import RunsScreen

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow

SIZE = (160, 40)
ESC = "\x1b"
NAMES = {"close": "[/]", "bold": "[bold]x", "ansi": "red\x1b[31mtext",
         "long": "[b]" + "n" * 493 + "-end"}
SHOWN = {"close": "[/]", "bold": "[bold]x", "ansi": "red\\e[31mtext"}
SPEC_MARKUP, SPEC_ESC = "[/]spec", "esc\x1b[1mspec"
CFG_MARKUP, CFG_ESC = "[red]cfg[/]", "cfg\x1b[2J"
ERROR = "Traceback (most recent call last):\n[/] boom\nRuntimeError: [bold]bad\x1b[31m red"
LOG = "epoch 1: [bold]loud[/bold] \x1b[31mred\x1b[0m\n[/]\tclosing\n"
ROOT = "[/]root\x1b[2J"
TINY = {"model": {"name": "resnet_tiny"}, "train": {"epochs": 1}, "device": "cpu"}


def _config() -> dict[str, Any]:
    from mfm.config import config_from_dict, config_to_dict

    return config_to_dict(config_from_dict({
        "method": {"name": "ce"}, "model": {"name": "resnet_tiny"}, "train": {"epochs": 5},
        "device": "cpu"}))


def seed(db_path: Path, runs_root: Path) -> dict[str, int]:
    """The hostile records. Names that the store would refuse today are written with plain
    SQL afterwards: records written by an older version or another tool hold them."""
    from mfm.store import Database, queue, repo

    assert len(NAMES["long"]) == 500
    ids: dict[str, int] = {}
    with Database(str(db_path)) as db:
        spec_id = repo.save_dataset_spec(db, SPEC_MARKUP, {"data": {"imbalance_factor": 10.0}})
        repo.save_dataset_spec(db, "esc-spec", {"data": {"imbalance_factor": 20.0}})
        cfg = repo.save_config(db, CFG_MARKUP, {"method": {"name": "ce"}, **TINY})
        repo.save_config(db, "esc-cfg", {"method": {"name": "focal"}, **TINY})
        for key in [*NAMES, "failed"]:
            rid = queue.enqueue_run(db, config=_config(), epochs_total=5, name=f"seed-{key}",
                                    code_version="0.1.0", dataset_spec_id=spec_id,
                                    config_id=cfg.id)
            ids[key] = rid
            log = runs_root / str(rid) / "run.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(LOG)
            fields: dict[str, Any] = {"checkpoint_dir": str(log.parent), "log_path": str(log)}
            if key == "failed":
                repo.log_epoch(db, rid, 0, {"acc": 0.5, "many": 0.6, "medium": 0.5,
                                            "few": 0.4}, [0.5] * 10)
                fields.update(status="failed", started_at=1.7e9, finished_at=1.7e9 + 60,
                              slot="cpu0", device="cpu", error=ERROR,
                              class_counts={"classes": [str(c) for c in range(10)],
                                            "train": [100 - 9 * c for c in range(10)],
                                            "meta": [10] * 10, "test": [50] * 10})
            repo.update_run(db, rid, **fields)
    config = _config()
    config["data"]["root"] = ROOT
    with sqlite3.connect(db_path) as con:
        for key, name in NAMES.items():
            con.execute("UPDATE runs SET name = ? WHERE id = ?", (name, ids[key]))
        con.execute("UPDATE runs SET name = ?, config_json = ? WHERE id = ?",
                    (NAMES["ansi"] + "-failed", json.dumps(config),
                     ids["failed"]))
        con.execute("UPDATE dataset_specs SET name = ? WHERE name = 'esc-spec'", (SPEC_ESC,))
        # and a method that is not one of the choices (the form's Select would raise on it)
        con.execute("UPDATE configs SET name = ?, config_json = ? WHERE name = 'esc-cfg'",
                    (CFG_ESC, json.dumps({"method": {"name": "[/]bad\x1b"}, **TINY})))
    con.close()
    return ids


@pytest.fixture
def hostile(tui_env: dict[str, Any]) -> dict[str, Any]:
    return {**tui_env, "ids": seed(tui_env["db"], tui_env["runs"])}


# -- what reached the screen --------------------------------------------------------------------


def strips(app: Any) -> list[Strip]:
    """What every widget laid out on the current screen draws now, line by line, widget after
    widget (each widget's ``render_lines`` over its whole region)."""
    out: list[Strip] = []
    for widget in app.screen.query("*"):
        region = widget.region  # empty unless the widget is on the screen now
        if widget.display and region:
            out.extend(widget.render_lines(Region(0, 0, region.width, region.height)))
    return out


def segments(app: Any) -> list[Any]:
    """Every segment the current screen would write to the terminal now."""
    return [seg for strip in strips(app) for seg in strip]


def screen_text(app: Any) -> str:
    return "".join(seg.text for seg in segments(app))


def assert_clean(app: Any) -> None:
    """No raw control character reaches the terminal (the visible forms do)."""
    raw = [seg.text for seg in segments(app)
           if any(ord(ch) < 32 or 0x7f <= ord(ch) < 0xa0 for ch in seg.text)]
    assert raw == []


def bold_segments_with(app: Any, text: str) -> list[str]:
    return [seg.text for seg in segments(app)
            if text in seg.text and seg.style is not None and seg.style.bold]


def cell(table: DataTable, row_key: str, column: str) -> Text:
    value = table.get_cell(row_key, column)
    assert isinstance(value, Text), f"a {type(value).__name__} cell is read as markup"
    return value


def first_cell(table: DataTable, row_key: str) -> Text:
    value = table.get_row(row_key)[0]
    assert isinstance(value, Text), f"a {type(value).__name__} cell is read as markup"
    return value


def notified(app: Any, text: str) -> list[Any]:
    """The notifications shown so far that contain ``text`` (conftest's app records them)."""
    return [n for n in app.notices if text in str(n.message)]


async def runs_loaded(pilot: Any, until: Any) -> RunsScreen:
    await until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen)
                and pilot.app.screen.polls >= 1, 15, "the runs table")
    return pilot.app.screen


async def select_run(pilot: Any, until: Any, screen: RunsScreen, run_id: int) -> None:
    screen.query_one("#runs", DataTable).move_cursor(row=screen.order.index(run_id))
    await until(pilot, lambda: screen.current_id() == run_id, 10, f"run {run_id} highlighted")


# -- the runs table, confirm dialogs, notifications ----------------------------------------------


async def test_runs_table_shows_hostile_names_literally(hostile, make_app, until):
    ids = hostile["ids"]
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await runs_loaded(pilot, until)
        table = screen.query_one("#runs", DataTable)
        for key, shown in SHOWN.items():
            name = cell(table, str(ids[key]), "name")
            assert name.plain == shown and not name.spans and not name.style
        long = cell(table, str(ids["long"]), "name").plain
        assert len(long) == NAME_CELL and long.startswith("[b]nnn") and long.endswith("…")
        await until(pilot, lambda: "red\\e[31mtext" in screen_text(app), 20, "the table drawn")
        text = screen_text(app)
        assert "[bold]x" in text and "[/]" in text and "[b]nnn" in text
        assert bold_segments_with(app, "[bold]x") == [] and bold_segments_with(app, "nnn") == []
        assert_clean(app)
        # the long name is cut: the status of its run is still on the same screen line
        lines = ["".join(s.text for s in strip) for strip in strips(app)]
        row = next(line for line in lines if "[b]nnn" in line)
        assert "queued" in row and "…" in row
        # the delete question shows the name literally, cut, with escapes visible
        await select_run(pilot, until, screen, ids["ansi"])
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                    and app.screen.query("#question"), 20, "the question")
        assert "red\\e[31mtext" in str(app.screen.query_one("#question").render())
        assert_clean(app)
        await pilot.press("n")
        await select_run(pilot, until, screen, ids["long"])
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                    and app.screen.query("#question"), 20, "the question")
        question = str(app.screen.query_one("#question").render())
        assert "[b]nnn" in question and len(question) < 300
        await pilot.press("y")
        await until(pilot, lambda: notified(app, f"run {ids['long']} deleted"), 10,
                    "the deletion")
        # a notification carrying markup-like text is literal, and the app lives on
        app.screen.notify(f"spec {SPEC_MARKUP} and [bold]{NAMES['ansi']}")
        await until(pilot, lambda: notified(app, "[/]spec"), 20, "the notification")
        note = notified(app, "[/]spec")[0]
        assert note.markup is False and ESC not in note.message
        assert "[bold]red\\e[31mtext" in note.message
        await until(pilot, lambda: "[/]spec" in screen_text(app), 20, "the toast drawn")
        assert_clean(app)
    assert app.return_code in (None, 0)


# -- the run screen: title, error, config, log ---------------------------------------------------


async def test_run_screen_shows_names_errors_config_and_log_literally(hostile, make_app,
                                                                     until):
    ids = hostile["ids"]
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await runs_loaded(pilot, until)
        await select_run(pilot, until, screen, ids["failed"])
        await pilot.press("o")
        await until(pilot, lambda: isinstance(app.screen, RunScreen)
                    and app.screen.polls >= 1, 10, "the run screen")
        run = app.screen
        title = str(run.query_one("#run-title").render())
        assert "red\\e[31mtext-failed" in title and "failed" in title
        error = str(run.query_one("#run-error").render())
        assert "[/] boom" in error and "RuntimeError: [bold]bad\\e[31m red" in error
        await until(pilot, lambda: "[/] boom" in screen_text(app), 20, "the error drawn")
        assert bold_segments_with(app, "bad") == []
        assert_clean(app)
        config = str(run.query_one("#config-text").render())
        assert "[/]root\\u001b[2J" in config  # TOML's escape, still literal
        await until(pilot, lambda: run.query_one("#log-view", Log).line_count >= 2, 10,
                    "the log")
        log = run.query_one("#log-view", Log).lines
        assert log[0] == "epoch 1: [bold]loud[/bold] \\e[31mred\\e[0m"
        assert log[1].startswith("[/]") and "closing" in log[1] and "\\t" not in log[1]
        for tab in ("config", "log"):
            run.query_one("#tabs").active = tab
            await until(pilot, lambda tab=tab: run.query_one(f"TabPane#{tab}").region
                        and "[/]" in screen_text(app), 20, f"the {tab} tab drawn")
            assert_clean(app)
        assert bold_segments_with(app, "loud") == []


# -- compare -------------------------------------------------------------------------------------


async def test_compare_screen_shows_names_literally(hostile, make_app, until):
    ids = hostile["ids"]
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await runs_loaded(pilot, until)
        for key in ("close", "bold", "ansi", "long"):
            await select_run(pilot, until, screen, ids[key])
            await pilot.press("space")
        await pilot.press("C")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen)
                    and app.screen.polls >= 1, 10, "the compare screen")
        cmp = app.screen
        table = cmp.query_one("#cmp-table", DataTable)
        names = table.get_row_at(0)[1:]  # the summary: one row per field, a column per run
        assert all(isinstance(n, Text) and not n.spans for n in names)
        plain = [n.plain for n in names]
        assert plain[:3] == ["[/]", "[bold]x", "red\\e[31mtext"]
        assert len(plain[3]) == NAME_LABEL
        for tab in ("curves", "classes", "summary"):
            cmp.query_one("#tabs").active = tab
            await until(pilot, lambda tab=tab: cmp.query_one(f"TabPane#{tab}").region, 10,
                        f"the {tab} tab shown")
            assert_clean(app)
        assert "[bold]x" in screen_text(app)


# -- dataset specs and configs -------------------------------------------------------------------


async def test_datasets_screen_lists_loads_and_deletes_markup_names(hostile, make_app,
                                                                   make_services, until):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.db_ready, 10, "the records")
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, DatasetsScreen)
                    and len(app.screen.specs) == 2, 10, "the spec list")
        screen = app.screen
        table = screen.query_one("#spec-list", DataTable)
        names = [first_cell(table, rec.name) for rec in screen.specs]
        assert sorted(n.plain for n in names) == sorted([SPEC_MARKUP, "esc\\e[1mspec"])
        await until(pilot, lambda: "[/]spec" in screen_text(app), 20, "the list drawn")
        assert_clean(app)
        # load the escaped one: the name field shows its visible form, never the raw ESC
        table.move_cursor(row=[r.name for r in screen.specs].index(SPEC_ESC))
        await pilot.press("ctrl+o")
        await until(pilot, lambda: screen.query_one("#spec-name", Input).value
                    == "esc\\e[1mspec", 20, "the loaded name")
        assert_clean(app)
        # delete the markup one: question and notification literal
        table.move_cursor(row=[r.name for r in screen.specs].index(SPEC_MARKUP))
        await pilot.press("ctrl+d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                    and app.screen.query("#question"), 20, "the question")
        assert "'[/]spec'" in str(app.screen.query_one("#question").render())
        await pilot.press("y")
        await until(pilot, lambda: notified(app, "'[/]spec' deleted"), 10, "the notification")
        assert make_services().get_dataset_spec(SPEC_MARKUP) is None
        await until(pilot, lambda: "'[/]spec' deleted" in screen_text(app), 20, "the toast")
    assert app.return_code in (None, 0)


async def test_configs_screen_lists_and_loads_markup_and_escape_names(hostile, make_app,
                                                                     until):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.db_ready, 10, "the records")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, ConfigsScreen)
                    and len(app.screen.configs) == 2, 10, "the config list")
        screen = app.screen
        table = screen.query_one("#cfg-list", DataTable)
        names = sorted(first_cell(table, rec.name).plain for rec in screen.configs)
        assert names == sorted([CFG_MARKUP, "cfg\\e[2J"])
        methods = [table.get_row(rec.name)[2] for rec in screen.configs]
        assert "[/]bad\\e" in [m.plain for m in methods if isinstance(m, Text)]
        await until(pilot, lambda: "[red]cfg[/]" in screen_text(app), 20, "the list drawn")
        assert_clean(app)
        table.move_cursor(row=[r.name for r in screen.configs].index(CFG_ESC))
        await pilot.press("ctrl+o")
        await until(pilot, lambda: screen.query_one("#cfg-name", Input).value == "cfg\\e[2J",
                    5, "the loaded name")
        # not a choice: the form shows the default instead of raising
        assert screen.form.row("method.name").control.value != "[/]bad\x1b"
        assert_clean(app)


# -- name validation in the forms ----------------------------------------------------------------


async def test_dataset_spec_form_refuses_bad_names(tui_env, make_app, make_services, until):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.db_ready, 10, "the records")
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, DatasetsScreen)
                    and app.screen.query("FieldRow"), 10, "the form")
        screen = app.screen
        name = screen.query_one("#spec-name", Input)
        for bad, why in (("bad\x07name", "got \\x07 at position 4"),
                         ("s" * 201, "at most 200 characters (got 201)")):
            name.value = bad
            await until(pilot,
                        lambda why=why: why in str(screen.query_one("#spec-error").render()), 20,
                        f"the inline error ({why})")
            assert screen.valid is False
            assert_clean(app)
            await pilot.press("ctrl+s")
            await until(pilot, lambda: notified(app, "fix the fields marked in red first"), 20,
                        "the refusal")
            app.notices.clear()
        assert make_services().list_dataset_specs() == []
        # the service refuses it too (a second line of defence)
        from mfm_tui.services import ServiceError

        with pytest.raises(ServiceError, match="control characters"):
            make_services().save_dataset_spec("x\x1by", {"data": {}})
        name.value = "fine-name"
        await until(pilot, lambda: screen.valid, 20, "a valid form")


async def test_config_form_refuses_bad_names(tui_env, make_app, make_services, until):
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: app.db_ready, 10, "the records")
        await pilot.press("f3")
        await until(pilot, lambda: isinstance(app.screen, ConfigsScreen)
                    and app.screen.query("FieldRow"), 10, "the form")
        screen = app.screen
        name = screen.query_one("#cfg-name", Input)
        name.value = "c" * 201
        await until(pilot, lambda: "at most 200" in str(screen.query_one("#cfg-error").render()),
                    5, "the inline error")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: notified(app, "fix the fields marked in red first"), 20,
                    "the refusal")
        name.value = "tab\there"
        await until(pilot, lambda: "control characters" in str(
            screen.query_one("#cfg-error").render()), 20, "the control character error")
        assert "\\t" in str(screen.query_one("#cfg-error").render())
        assert_clean(app)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: len(notified(app, "fix the fields marked in red first")) == 2,
                    20, "the second refusal")
        assert make_services().list_configs() == []


async def test_new_run_form_refuses_bad_names_and_shows_markup_options(hostile, make_app,
                                                                       make_services, until):
    before = {r.id for r in make_services().list_runs()}
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await runs_loaded(pilot, until)
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.specs,
                    10, "the form with the specs")
        screen = app.screen
        spec_sel = screen.query_one("#nr-spec", Select)
        cfg_sel = screen.query_one("#nr-config", Select)
        prompts = [option.prompt for sel in (spec_sel, cfg_sel)
                   for option in sel.query_one(OptionList).options]
        shown = [p.plain for p in prompts if isinstance(p, Text)]
        assert any(s.startswith("[/]spec (") for s in shown)
        assert any(s.startswith("esc\\e[1mspec (") for s in shown)
        assert any(s.startswith("[red]cfg[/] v1") for s in shown)
        spec = make_services().get_dataset_spec(SPEC_MARKUP)
        spec_sel.value = spec.id
        await until(pilot, lambda: "[/]spec (" in screen_text(app), 20, "the chosen spec drawn")
        assert_clean(app)
        name = screen.query_one("#nr-name", Input)
        for bad, why in (("r" * 201, "at most 200"), ("bell\x07", "control characters")):
            name.value = bad
            await until(pilot,
                        lambda why=why: why in str(screen.query_one("#nr-error").render()), 20,
                        f"the inline error ({why})")
            assert screen.plan is None
            await pilot.press("ctrl+s")
            await until(pilot, lambda: notified(app, "nothing was queued"), 20, "the refusal")
            app.notices.clear()
        # several seeds: the -s<seed> suffix may not push a name past the limit
        name.value = "r" * 199
        screen.query_one("#nr-seeds", Input).value = "2"
        await until(pilot, lambda: "-s0 suffix" in str(screen.query_one("#nr-error").render()),
                    5, "the suffix error")
        assert_clean(app)
    assert {r.id for r in make_services().list_runs()} == before


async def test_cloning_a_run_with_escapes_fills_a_visible_name(hostile, make_app, until):
    ids = hostile["ids"]
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        screen = await runs_loaded(pilot, until)
        await select_run(pilot, until, screen, ids["ansi"])
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen)
                    and app.screen.query("#nr-name"), 20, "the form")
        name = app.screen.query_one("#nr-name", Input).value
        assert name == "red\\e[31mtext-clone"
        await until(pilot, lambda: app.screen.plan is not None, 20, "a valid plan")
        assert_clean(app)


# -- the entry point -----------------------------------------------------------------------------


def _entry(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MFM_LOG_DIR": str(tmp_path / "logs"), "TERM": "dumb"}
    env.pop("MFM_DB", None)
    env.pop("MFM_DEBUG", None)
    exe = Path(sys.executable).with_name("mfm-tui")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mfm_tui"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, cwd=tmp_path, env=env)


@pytest.mark.parametrize("case", ["not-sqlite", "directory", "missing-folder"])
def test_entry_point_refuses_a_bad_database_in_one_line(tmp_path, case):
    if case == "not-sqlite":
        target = tmp_path / "notes.db"
        target.write_text("this is not a database\n")
        expect = "is not a SQLite database"
    elif case == "directory":
        target = tmp_path / "a-folder.db"
        target.mkdir()
        expect = "is a directory"
    else:
        target = tmp_path / "nowhere" / "x.db"
        expect = "does not exist"
    res = _entry(["--db", str(target)], tmp_path)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and expect in lines[0] and target.name in lines[0]
    assert res.stdout == ""
    if case == "not-sqlite":
        assert target.read_text() == "this is not a database\n"  # untouched


def test_entry_point_turns_an_unexpected_error_into_one_line(tmp_path, monkeypatch, capsys):
    from mfm_tui import app as app_module

    def boom(self: Any) -> None:
        raise RuntimeError("the [bold]terminal\x1b[31m went away")

    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.delenv("MFM_DEBUG", raising=False)
    monkeypatch.setattr(app_module.MfmApp, "run", boom)
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["--db", str(tmp_path / "e.db")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and ESC not in err
    assert err.startswith("error: RuntimeError: the [bold]terminal\\e[31m went away")
    logs = list((tmp_path / "logs").glob("mfm-tui-crash-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()


def test_entry_point_exits_non_zero_after_a_records_error_on_screen(tui_env, monkeypatch,
                                                                    capsys, until):
    """A problem found only when the records are opened (a newer schema) is shown on the
    message screen; once the user quits, it is said again in one line and the exit code is 1."""
    from mfm_tui import app as app_module
    from mfm_tui.services import Services

    Services(str(tui_env["db"])).open()
    with sqlite3.connect(tui_env["db"]) as con:
        con.execute("UPDATE schema_info SET version = 999 WHERE id = 1")
    con.close()

    def run_headless(self: Any) -> None:
        async def go() -> None:
            async with self.run_test(size=(100, 30)) as pilot:
                await until(pilot, lambda: self.db_error, 20, "the records error")
                await pilot.press("q")

        asyncio.run(go())

    monkeypatch.setattr(app_module.MfmApp, "run", run_headless)
    with pytest.raises(SystemExit) as exit_info:
        app_module.main(["--db", str(tui_env["db"])])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "999" in err and err.startswith("error: ")


def test_check_target_reads_sqlite_paths_and_urls_and_leaves_other_backends(tmp_path):
    from mfm_tui.services import ServiceError, check_target

    bad = tmp_path / "bad\x1b.db"
    bad.write_text("not sqlite")
    for target in (str(bad), f"sqlite:///{bad}"):
        with pytest.raises(ServiceError, match=r"bad\\e\.db' is not a SQLite database"):
            check_target(target)
    with pytest.raises(ServiceError, match="does not exist"):
        check_target(f"sqlite:///{tmp_path / 'no' / 'x.db'}")
    for fine in (str(tmp_path / "new.db"), ":memory:", "sqlite://", "sqlite:///:memory:",
                 "postgresql://user@host/db"):
        check_target(fine)
