"""The run screen names a run's parent (the run it starts from: train.init_from) and its
children, live, through the services (Pilot against a real SQLite file); and the lineage
line itself (pure)."""

from __future__ import annotations

import pytest
from tui.conftest import _config

from mfm.store.records import RunLink, RunRecord
from mfm_tui.format import lineage_text
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.runs import RunsScreen

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
pytestmark = pytest.mark.slow

SIZE = (120, 30)


def _child_config(parent: int, which: str = "best") -> dict:
    cfg = _config("ce")
    cfg["train"] = {**cfg["train"], "init_from": str(parent), "init_checkpoint": which,
                    "trainable": "classifier"}
    return cfg


def _text(screen, selector: str) -> str:
    widget = screen.query_one(selector)
    return str(widget.render()) if widget.display else ""


async def _open(pilot, until, run_id: int):
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.polls, 10,
                "the runs table")
    app.push_screen(RunScreen(run_id))
    await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls, 5,
                "the run screen")
    return app.screen


async def test_run_screen_shows_parent_and_children(fixed_db, make_app, until):
    from mfm.store import Database, queue, repo

    parent = fixed_db["ids"]["ce-base"]
    with Database(str(fixed_db["db"])) as db:
        child = queue.enqueue_run(db, config=_child_config(parent), epochs_total=5,
                                  name="crt")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open(pilot, until, child)
        assert _text(screen, "#run-lineage").strip() == (
            f"after run {parent} ce-base (completed, its best.pt)")
        await pilot.press("escape")
        screen = await _open(pilot, until, parent)
        assert _text(screen, "#run-lineage").strip() == f"followed by {child} (queued)"
        # a second child queued meanwhile shows at the next poll
        with Database(str(fixed_db["db"])) as db:
            other = queue.enqueue_run(db, config=_child_config(parent, "last"),
                                      epochs_total=5)
        await until(pilot, lambda: f"{other} (queued)" in _text(screen, "#run-lineage"), 5,
                    "the new child")
        assert _text(screen, "#run-lineage").strip() == (
            f"followed by {child} (queued), {other} (queued)")
        await pilot.press("escape")
        # a run with neither: no line at all
        screen = await _open(pilot, until, fixed_db["ids"]["bs"])
        assert screen.query_one("#run-lineage").display is False
        await pilot.press("escape")
        with Database(str(fixed_db["db"])) as db:
            repo.delete_run(db, parent)
        screen = await _open(pilot, until, child)
        assert _text(screen, "#run-lineage").strip() == (
            f"after run {parent} (no longer in the records, its best.pt)")


def _record(**kw) -> RunRecord:
    base = dict(id=9, name=None, status="queued", created_at=0.0, started_at=None,
                finished_at=None, host=None, pid=None, device=None, config={}, split_hash=None,
                error=None, summary=None, class_counts=None, confusion=None, epochs_total=1,
                epoch=None, checkpoint_dir=None, log_path=None, heartbeat_at=None,
                dataset_spec_id=None, config_id=None)
    return RunRecord(**{**base, **kw})


def test_lineage_text_is_plain_and_cut():
    rec = _record(parent_id=3, config={"train": {"init_from": "3", "init_checkpoint": "last"}})
    text = lineage_text(rec, RunLink(3, "a\x1bname", "running"), [])
    assert "\x1b" not in text  # a name never reaches the terminal as control characters
    assert text.startswith("after run 3 a") and text.endswith("name (running, its last.pt)")
    kids = [RunLink(i, None, "queued") for i in range(10, 25)]
    assert lineage_text(_record(), None, kids) == (
        "followed by " + ", ".join(f"{i} (queued)" for i in range(10, 22)) + " and 3 more")
    assert lineage_text(_record(), None, []) == ""
