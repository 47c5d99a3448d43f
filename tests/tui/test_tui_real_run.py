"""A real tiny run queued from the new-run form: a supervisor is started for the database,
the run trains on digits (resnet_tiny, 1 epoch, CPU) and the table shows it completed."""

from __future__ import annotations

import pytest
from textual.widgets import Select

from mfm_tui.screens.new_run import NewRunScreen
from mfm_tui.screens.run import RunScreen
from mfm_tui.screens.runs import RunsScreen
from mfm_tui.widgets.charts import LineChart

# real subprocesses / processes racing on one database: the CI run, not the inner loop
pytestmark = pytest.mark.slow


async def test_queue_a_tiny_run_from_the_form_and_watch_it_complete(tui_env, make_services,
                                                                    make_app, until,
                                                                    kill_supervisors):
    services = make_services()
    services.save_config("tiny", {"model": {"name": "resnet_tiny"},
                                  "train": {"epochs": 1, "log_every": 1},
                                  "device": "cpu"})
    app = make_app(start_supervisor=True,
                   supervisor_args=["--idle-exit", "60", "--poll", "0.2"])
    kill_supervisors.append(app.services)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.polls, 10,
                    "the runs table")
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen) and app.screen.configs,
                    5, "the form")
        form = app.screen
        form.query_one("#nr-config", Select).value = services.get_config("tiny").id
        await until(pilot, lambda: "resnet_tiny" in str(form.query_one("#nr-plan").render()), 5,
                    "the plan")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, RunsScreen), 20, "the queueing")
        assert app.services.started_supervisors, "a supervisor should have been started"

        def status() -> str:
            return app.screen.cells[1][5] if 1 in app.screen.cells else ""

        await until(pilot, lambda: status().startswith(("queued", "starting", "running",
                                                        "completed")), 10, "the new row")
        await until(pilot, lambda: status() == "completed", 120,
                    f"the run to complete (status {status()!r})")
        assert app.screen.cells[1][6] == "1/1"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.polls, 10,
                    "its charts")
        acc = app.screen.query_one("#acc-chart", LineChart)
        assert acc.series["acc"].xs == [1.0]
        assert len(app.screen.query_one("#loss-chart", LineChart).series["train loss"]) >= 1
        assert app.screen.query_one("#log-view").line_count > 0
