"""Stage 2 waits for stage 1, with a real supervisor and real run processes: a child queued
before its parent completed is not claimed (even with a slot free) until the parent completes;
a parent that ended without completing holds its child back, saying so, until it is resumed
and completes. The child then starts from the parent's weights."""

from __future__ import annotations

import pytest
from proc_helpers import wait_for

from mfm.config import config_to_dict, load_config
from mfm.store import Database, queue, repo

# real subprocesses: the CI run, not the inner loop
pytestmark = pytest.mark.slow

STAGE2 = ["--set", "train.trainable=classifier", "--set", "data.sampler=class_balanced",
          "--set", "method.name=ce"]


def _note(env, run_id: int) -> str:
    return env.run(run_id).error or ""


def test_a_child_queued_with_a_running_parent_starts_after_it_completed(env):
    env.start_worker("--cpu-slots", "2")
    # batch 16: a few dozen steps an epoch, so the parent is seen running
    parent = env.enqueue("--set", "method.name=ce", "--set", "train.batch_size=16", epochs=8)
    child = env.enqueue("--set", f"train.init_from={parent}", *STAGE2, epochs=1)
    assert env.run(child).parent_id == parent
    wait_for(lambda: env.status(parent) == "running", 120, "the parent to run")
    # the second slot is free, yet the child waits, and says for what
    wait_for(lambda: f"run {parent} (running)" in _note(env, child), 60,
             "the child's note to say it waits for its running parent")
    assert env.status(child) == "queued"
    wait_for(lambda: env.status(child) in ("completed", "failed"), 240,
             "the child to run after its parent")
    p, c = env.run(parent), env.run(child)
    assert (p.status, c.status) == ("completed", "completed"), c.error
    assert c.started_at >= p.finished_at and c.error is None
    show = env.mfm("show", str(child), check=True).stdout
    assert f"parent run {parent} (completed), from its last.pt" in show
    assert f"children {child} (completed)" in env.mfm("show", str(parent), check=True).stdout


def test_a_parent_that_ended_holds_its_child_until_resumed(env):
    """Queued together (as a sweep queues stage 1 and 2); the parent is cancelled before it
    starts: the child is never claimed, its note says why; `mfm resume` of the parent lets
    both run, in order."""
    def tiny(*sets: str) -> dict:
        return config_to_dict(load_config(None, ["model.name=resnet_tiny", "device=cpu",
                                                 "method.name=ce", "train.epochs=2", *sets]))

    with Database(str(env.db_path)) as db:
        parent = queue.enqueue_run(db, config=tiny(), epochs_total=2, name="stage1")
        child = queue.enqueue_run(db, config=tiny(f"train.init_from={parent}",
                                                  "train.trainable=classifier"),
                                  epochs_total=2, name="stage2")
        for rid in (parent, child):
            repo.update_run(db, rid, checkpoint_dir=str(env.runs / str(rid)))
        assert queue.request_cancel(db, parent) == "cancelled"
    env.start_worker("--cpu-slots", "2")
    wait_for(lambda: f"run {parent} (cancelled)" in _note(env, child), 60,
             "the child's note to say its parent was cancelled")
    assert env.status(child) == "queued"
    assert f"mfm resume {parent}" in _note(env, child)
    runs = env.mfm("runs", check=True).stdout
    assert f"waits for run {parent} (cancelled)" in runs
    env.mfm("resume", str(parent), check=True)
    wait_for(lambda: env.status(child) in ("completed", "failed"), 240,
             "the child to run after its resumed parent")
    p, c = env.run(parent), env.run(child)
    assert (p.status, c.status) == ("completed", "completed"), c.error
    assert c.started_at >= p.finished_at
    log = env.mfm("logs", str(child), check=True).stdout
    assert "completed" in log


def test_a_parent_deleted_after_queueing_fails_its_child_with_one_line(env):
    env.start_worker("--cpu-slots", "1")
    parent = env.enqueue("--set", "method.name=ce", epochs=1)
    wait_for(lambda: env.status(parent) == "completed", 120, "the parent to complete")
    with Database(str(env.db_path)) as db:
        rec = repo.get_run(db, parent)
        cfg = config_to_dict(load_config(None, ["model.name=resnet_tiny", "device=cpu",
                                                "method.name=ce", "train.epochs=1",
                                                f"train.init_from={parent}"]))
        repo.delete_run(db, parent)
        child = queue.enqueue_run(db, config=cfg, epochs_total=1)
        repo.update_run(db, child, checkpoint_dir=str(env.runs / str(child)))
    assert rec.status == "completed"
    wait_for(lambda: env.status(child) == "failed", 120, "the child to be refused at start")
    assert env.run(child).error == (f"train.init_from: no run {parent} in the records (see mfm "
                                    "runs)")
