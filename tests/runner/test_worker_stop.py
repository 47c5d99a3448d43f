"""``mfm worker stop``: the supervisor serving a database here exits, its running run keeps
going and a new supervisor re-adopts it (real processes: the supervisor through the runner's
own entry point, a torch-free stand-in for the run process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from proc_helpers import Env, wait_for

from mfm.runner.procs import is_alive
from mfm.store import Database, queue

STAND_INS = Path(__file__).with_name("stand_ins")


@pytest.mark.slow
def test_worker_stop_stops_the_supervisor_and_leaves_its_run_running(tmp_path):
    env = Env(tmp_path)
    env.env.update(MFM_FAKE_SECONDS="600", MFM_FAKE_LEDGER=str(tmp_path / "ledger"),
                   PYTHONPATH=os.pathsep.join([str(STAND_INS), os.environ.get("PYTHONPATH",
                                                                                "")]))
    try:
        with Database(str(env.db_path)) as db:
            run_id = queue.enqueue_run(db, config={"method": {"name": "ce"}}, epochs_total=1)
        res = env.mfm("worker", "--detach", "--child-module", "fake_run_child", "--poll", "0.2",
                      check=True)
        assert "supervisor started in the background" in res.stdout
        holder = wait_for(env.holder, 30, "the detached supervisor to serve")
        wait_for(lambda: env.status(run_id) == "running", 60, "the run to start")
        run_pid = env.run(run_id).pid
        res = env.mfm("worker", "stop", check=True)
        assert res.stdout.strip() == (f"supervisor pid {holder['pid']} stopped; runs {run_id} "
                                      f"keep running (the next supervisor re-adopts them)")
        assert env.holder() is None
        assert env.status(run_id) == "running" and is_alive(run_pid, env.run(run_id).proc_start)
        res = env.mfm("worker", "stop", check=True)
        assert res.stdout.strip().startswith("no supervisor serves")
        # a new supervisor re-adopts the run and can cancel it
        env.start_worker("--child-module", "fake_run_child")
        env.mfm("cancel", str(run_id), check=True)
        wait_for(lambda: env.status(run_id) == "cancelled", 60, "the re-adopted run to stop")
    finally:
        env.cleanup()
