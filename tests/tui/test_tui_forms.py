"""Pilot tests of the datasets, configs and new-run screens: validation as you type, inline
errors that never reach the records, saving, versioning, queueing."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Select
from tui.pilot_wait import focus

from mfm_tui.screens.configs import ConfigsScreen
from mfm_tui.screens.datasets import DatasetsScreen
from mfm_tui.screens.new_run import NewRunScreen
from mfm_tui.screens.runs import RunsScreen
from mfm_tui.widgets.form import field_id

# Real apps driven by Pilot: part of the full suite, left out of the inner loop
# (pytest -m 'not slow'); pytest tests/tui runs them.
pytestmark = pytest.mark.slow

SIZE = (100, 30)


async def open_mode(pilot, until, key: str, cls: type) -> None:
    await until(pilot, lambda: pilot.app.db_ready, 10, "the records to open")
    await pilot.press(key)
    await until(pilot, lambda: isinstance(pilot.app.screen, cls)
                and pilot.app.screen.query("FieldRow"), 5, f"{cls.__name__} and its fields")


def notified(app, text: str) -> bool:
    """Whether the app has shown a notification containing ``text`` (conftest's app keeps
    them in ``app.notices``)."""
    return any(text in str(n.message) for n in app.notices)


def row(app, key: str):
    return app.screen.query_one(f"#{field_id(key)}")


async def type_into(pilot, widget: Input, text: str) -> None:
    await focus(pilot, widget)
    await pilot.press("ctrl+a", "ctrl+k", *text)


async def test_dataset_spec_inline_errors_preview_and_save(tui_env, make_app, make_services,
                                                          until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_mode(pilot, until, "f2", DatasetsScreen)
        screen = app.screen
        await until(pilot, lambda: screen.previews >= 1, 10, "the default preview")
        assert screen.preview["train"][0] > screen.preview["train"][-1]  # long-tailed
        assert len(screen.query_one("#spec-chart").counts["train"]) == 10
        # a bad value: inline error, no save
        await type_into(pilot, screen.query_one("#spec-name", Input), "lt100")
        imb = row(app, "data.imbalance_factor")
        await type_into(pilot, imb.control, "0.5")
        assert imb.has_class("-invalid") and ">= 1" in str(imb.query_one(".f-error").render())
        await pilot.press("ctrl+s")
        await until(pilot, lambda: notified(app, "fix the fields marked in red first"), 5,
                    "the refusal")
        assert make_services().list_dataset_specs() == []
        # text that is not a number
        await type_into(pilot, imb.control, "ten")
        assert "expected float" in str(imb.query_one(".f-error").render())
        # fixed: the preview follows, then it saves
        await type_into(pilot, imb.control, "100")
        assert not imb.has_class("-invalid")
        before = screen.previews
        await until(pilot, lambda: screen.previews > before and screen.preview is not None, 10,
                    "the preview of IF 100")
        train = screen.preview["train"]
        assert round(max(train) / min(train)) in (99, 100, 101) or max(train) / min(train) > 50
        # a held-out validation split joins the preview, the chart and the summary
        before = screen.previews
        await type_into(pilot, row(app, "data.val_per_class").control, "3")
        await until(pilot, lambda: screen.previews > before and screen.preview is not None
                    and screen.preview["val"] == [3] * 10, 10, "the preview with val")
        assert screen.query_one("#spec-chart").counts["val"] == [3] * 10
        assert "val 30" in str(screen.query_one("#spec-summary").render())
        await pilot.press("ctrl+s")
        await until(pilot, lambda: make_services().get_dataset_spec("lt100") is not None, 5,
                    "the spec to be saved")
        saved = make_services().get_dataset_spec("lt100").spec["data"]
        assert saved["imbalance_factor"] == 100 and saved["val_per_class"] == 3
        await until(pilot, lambda: screen.specs and screen.specs[0].name == "lt100", 5,
                    "the list to show it")
        # new clears the form; load brings the saved spec back
        await pilot.press("ctrl+n")
        assert screen.query_one("#spec-name", Input).value == ""
        assert row(app, "data.imbalance_factor").control.value == "10"
        await pilot.press("ctrl+o")
        assert screen.query_one("#spec-name", Input).value == "lt100"
        assert row(app, "data.imbalance_factor").control.value == "100"
        # imagefolder without a root: the error names data.root, under that field
        row(app, "data.name").control.value = "imagefolder"
        root = row(app, "data.root")
        await until(pilot, lambda: root.has_class("-invalid") and "imagefolder needs data.root"
                    in str(root.query_one(".f-error").render()), 5, "the data.root error")
        # delete (confirm)
        await pilot.press("ctrl+d")
        await pilot.press("y")
        await until(pilot, lambda: make_services().get_dataset_spec("lt100") is None, 5,
                    "the spec to be deleted")


async def test_config_form_from_schema_versions_and_guards(fixed_db, make_app, make_services,
                                                          until):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_mode(pilot, until, "f3", ConfigsScreen)
        screen = app.screen
        # the default method is mfm: its section shows, other methods' keys do not
        assert row(app, "method.name").control.value == "mfm"
        assert row(app, "mfm.bound").display and row(app, "mfm.meta_lr").display
        assert not row(app, "method.focal_gamma").display
        row(app, "method.name").control.value = "ce"
        await until(pilot, lambda: not row(app, "mfm.bound").display
                    and not screen.query_one("#sec-mfm").display, 5, "no mfm section for ce")
        assert not row(app, "method.focal_gamma").display
        row(app, "method.name").control.value = "mfm"
        await until(pilot, lambda: row(app, "mfm.bound").display
                    and row(app, "mfm.meta_lr").display, 5, "the mfm section")
        assert "(default 1)" in str(row(app, "mfm.bound").query_one(".f-help").render())
        await type_into(pilot, screen.query_one("#cfg-name", Input), "mfm-a")
        bound = row(app, "mfm.bound")
        await type_into(pilot, bound.control, "-1")
        assert bound.has_class("-invalid") and "> 0" in str(
            bound.query_one(".f-error").render())
        await pilot.press("ctrl+s")
        await until(pilot, lambda: notified(app, "fix the fields marked in red first"), 5,
                    "the refusal")
        assert make_services().get_config("mfm-a") is None
        # a rule across fields: label-dependent modulation must stay a penultimate scale
        await type_into(pilot, bound.control, "2")
        row(app, "mfm.sites").control.value = "stage"
        await until(pilot, lambda: row(app, "mfm.sites").has_class("-invalid"), 5,
                    "the cross-field error")
        row(app, "mfm.sites").control.value = "penultimate"
        await until(pilot, lambda: screen.valid, 5, "the form to be valid again")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: make_services().get_config("mfm-a") is not None, 5, "save")
        saved = make_services().get_config("mfm-a")
        assert saved.version == 1 and saved.config == {"method": {"name": "mfm"},
                                                       "mfm": {"bound": 2.0}}
        # edit a config used by a run: a new version, the old one untouched
        screen.query_one("#cfg-list").move_cursor(row=[c.name for c in screen.configs]
                                                  .index("tiny-ce"))
        await pilot.press("ctrl+o")
        await until(pilot, lambda: screen.query_one("#cfg-name", Input).value == "tiny-ce", 5,
                    "the loaded config")
        assert row(app, "model.name").control.value == "resnet_tiny"
        await until(pilot, lambda: "used by run(s) 5" in str(
            screen.query_one("#cfg-info").render()), 5, "the usage line")
        await type_into(pilot, row(app, "train.epochs").control, "3")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: make_services().get_config("tiny-ce").version == 2, 5,
                    "version 2")
        assert make_services().get_config("tiny-ce", 1).config["train"]["epochs"] == 1
        # the list's cursor follows the saved config; delete is refused while runs use it
        await until(pilot, lambda: screen.selected() is not None
                    and screen.selected().name == "tiny-ce"
                    and screen.selected().version == 2, 5, "the cursor on the saved config")
        await pilot.press("ctrl+d", "y")
        await until(pilot, lambda: notified(app, "it is kept so they keep their record"), 5,
                    "the refusal")
        assert make_services().get_config("tiny-ce") is not None
        # clone: same values, new name
        await pilot.press("ctrl+l")
        await until(pilot, lambda: screen.query_one("#cfg-name", Input).value == "tiny-ce-copy",
                    5, "the clone's name")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: make_services().get_config("tiny-ce-copy") is not None, 5,
                    "the clone to be saved")
        assert make_services().get_config("tiny-ce-copy").config["train"]["epochs"] == 3
        # an unused config can be deleted
        await until(pilot, lambda: "tiny-ce-copy" in [c.name for c in screen.configs], 5,
                    "the clone in the list")
        screen.query_one("#cfg-list").move_cursor(row=[c.name for c in screen.configs]
                                                  .index("tiny-ce-copy"))
        await pilot.press("ctrl+d", "y")
        await until(pilot, lambda: make_services().get_config("tiny-ce-copy") is None, 5,
                    "the clone to be deleted")


async def test_new_run_form_validates_and_queues_one_run_per_seed(fixed_db, make_app,
                                                                  make_services, until):
    app = make_app()
    before = {r.id for r in make_services().list_runs()}
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.polls, 10,
                    "the runs table")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.specs,
                    5, "the form with the saved specs")
        screen = app.screen
        spec = make_services().get_dataset_spec("digits-if10")
        cfg = make_services().get_config("tiny-ce")
        screen.query_one("#nr-spec", Select).value = spec.id
        screen.query_one("#nr-config", Select).value = cfg.id
        await type_into(pilot, screen.query_one("#nr-set", Input), "optim.lr=abc")
        assert screen.plan is None
        assert "optim.lr: expected float" in str(screen.query_one("#nr-error").render())
        await pilot.press("ctrl+s")
        await until(pilot, lambda: notified(app, "nothing was queued"), 5, "the refusal")
        assert {r.id for r in make_services().list_runs()} == before  # never reached the queue
        await type_into(pilot, screen.query_one("#nr-set", Input), "optim.lr=0.05 seed=7")
        await type_into(pilot, screen.query_one("#nr-seeds", Input), "3")
        await type_into(pilot, screen.query_one("#nr-name", Input), "sweep")
        assert screen.plan is not None and "seeds 7..9" in str(
            screen.query_one("#nr-plan").render())
        # the slot list holds this host's slots (no supervisor: the default ones)
        slot_sel = screen.query_one("#nr-slot", Select)
        wish = make_services().slot_names()[0]
        slot_sel.value = wish
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 10, "back to the runs")
    new = [r for r in make_services().list_runs() if r.id not in before]
    assert sorted(r.name for r in new) == ["sweep-s7", "sweep-s8", "sweep-s9"]
    assert {r.config["seed"] for r in new} == {7, 8, 9}
    assert all(r.status == "queued" and r.config["optim"]["lr"] == 0.05
               and r.config["model"]["name"] == "resnet_tiny" and r.dataset_spec_id == spec.id
               and r.config_id == cfg.id and r.checkpoint_dir for r in new)
    assert {r.want_slot for r in new} == {wish}


async def test_clone_prefills_the_form_with_the_runs_frozen_config(fixed_db, make_app,
                                                                   make_services, until):
    ids = fixed_db["ids"]
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.polls, 10,
                    "the runs table")
        app.screen.query_one("#runs").move_cursor(row=app.screen.order.index(ids["mfm-live"]))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen)
                    and app.screen.query("#nr-config"), 5, "the form")
        screen = app.screen
        assert screen.query_one("#nr-name", Input).value == "mfm-live-clone"
        assert screen.query_one("#nr-spec", Select).value == "clone"
        assert screen.query_one("#nr-config", Select).value == "clone"
        configs, names = screen.plan
        original = make_services().get_run(ids["mfm-live"]).config
        from mfm.config import config_to_dict
        assert config_to_dict(configs[0]) == original and names == ["mfm-live-clone"]
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
