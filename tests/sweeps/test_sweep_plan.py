"""Planning a sweep against real records: which cells a run already answers (reused, stale,
active, to resume, failed), which need a run, and what the rest will cost."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from mfm.store import Database, queue, repo
from mfm.store.hashing import config_hash
from mfm.sweeps.plan import plan_sweep
from mfm.sweeps.spec import expand, parse_sweep

SWEEP = """
name = "study"
device = "cpu"
data.name = "digits"
model.name = "resnet_tiny"
train.epochs = 4
train.batch_size = 64

[grid]
"method.name" = ["ce", "balanced_softmax"]
seed = [0, 1]
"""


def spec_of(text: str = SWEEP):
    return parse_sweep(tomllib.loads(text), text=text)


def cells(text: str = SWEEP):
    return {(c.arm, c.seed): c for c in expand(spec_of(text))}


def add_run(db: Database, config: dict, status: str, *, version: str | None = "v1",
            seconds_per_epoch: float | None = None, epoch: int | None = None) -> int:
    """A run of ``config`` brought to ``status`` the way the queue does it."""
    run_id = queue.enqueue_run(db, config=config, epochs_total=config["train"]["epochs"],
                               name="r", code_version=version)
    if status == "queued":
        return run_id
    assert queue.transition(db, run_id, "starting", allowed_from=("queued",))
    assert queue.transition(db, run_id, "running", allowed_from=("starting",))
    if epoch is not None:
        repo.update_run(db, run_id, epoch=epoch)
    if status == "completed":
        summary = {"final": {"acc": 0.5}, "best": {"acc": 0.5}}
        if seconds_per_epoch is not None:
            summary["seconds_per_epoch"] = seconds_per_epoch
        repo.update_run(db, run_id, summary=summary)
    if status != "running":
        assert queue.transition(db, run_id, status, allowed_from=("running",))
    return run_id


@pytest.fixture
def db(db_path: Path):
    with Database(str(db_path)) as d:
        yield d


def actions(plan) -> dict[tuple[str, int], str]:
    return {(c.cell.arm, c.cell.seed): c.action for c in plan.cells}


def test_nothing_recorded_every_cell_is_new(db: Database) -> None:
    plan = plan_sweep(db, spec_of(), code_version="v1")
    assert set(actions(plan).values()) == {"new"}
    assert len(plan.to_run) == 4 and plan.count("new") == 4
    assert plan.estimate_seconds is None and plan.unestimated == 4
    assert all(c.config_hash == config_hash(c.cell.resolved) for c in plan.cells)
    json.dumps(plan.grid(), allow_nan=False)  # what the records keep is plain JSON


def test_a_completed_run_with_the_same_config_is_reused(db: Database) -> None:
    c = cells()
    done = add_run(db, c[("ce", 0)].resolved, "completed", version="v1")
    # another seed's run and a run of other settings answer nothing here
    other = dict(c[("ce", 0)].resolved, seed=9)
    add_run(db, other, "completed", version="v1")
    plan = plan_sweep(db, spec_of(), code_version="v1")
    acts = actions(plan)
    assert acts[("ce", 0)] == "reuse"
    assert [p.run.id for p in plan.cells if p.action == "reuse"] == [done]
    assert acts[("ce", 1)] == acts[("balanced_softmax", 0)] == "new"
    assert plan.count("reuse") == 1 and len(plan.to_run) == 3


def test_a_run_from_another_code_version_is_stale_and_rerun_on_request(db: Database) -> None:
    c = cells()
    old = add_run(db, c[("ce", 1)].resolved, "completed", version="v0")
    plan = plan_sweep(db, spec_of(), code_version="v1")
    stale = [p for p in plan.cells if p.action == "stale"]
    assert [(p.cell.arm, p.cell.seed, p.run.id) for p in stale] == [("ce", 1, old)]
    assert stale[0] not in plan.to_run
    rerun = plan_sweep(db, spec_of(), code_version="v1", rerun_stale=True)
    assert actions(rerun)[("ce", 1)] == "new"
    assert len(rerun.to_run) == 4
    # a fresh run beside the stale one wins
    fresh = add_run(db, c[("ce", 1)].resolved, "completed", version="v1")
    again = plan_sweep(db, spec_of(), code_version="v1", rerun_stale=True)
    assert [(p.action, p.run.id) for p in again.cells if p.cell.seed == 1
            and p.cell.arm == "ce"] == [("reuse", fresh)]


def test_queued_or_running_runs_are_active(db: Database) -> None:
    c = cells()
    q = add_run(db, c[("ce", 0)].resolved, "queued")
    r = add_run(db, c[("balanced_softmax", 1)].resolved, "running")
    plan = plan_sweep(db, spec_of(), code_version="v1")
    got = {(p.cell.arm, p.cell.seed): (p.action, p.run and p.run.id) for p in plan.cells}
    assert got[("ce", 0)] == ("active", q)
    assert got[("balanced_softmax", 1)] == ("active", r)
    assert len(plan.to_run) == 2


def test_cancelled_or_lost_runs_are_resumed_and_failed_ones_are_left(db: Database) -> None:
    c = cells()
    cancelled = add_run(db, c[("ce", 0)].resolved, "cancelled", epoch=1)
    lost = add_run(db, c[("ce", 1)].resolved, "lost")
    failed = add_run(db, c[("balanced_softmax", 0)].resolved, "failed")
    plan = plan_sweep(db, spec_of(), code_version="v1")
    got = {(p.cell.arm, p.cell.seed): (p.action, p.run and p.run.id) for p in plan.cells}
    assert got[("ce", 0)] == ("resume", cancelled)
    assert got[("ce", 1)] == ("resume", lost)
    assert got[("balanced_softmax", 0)] == ("failed", failed)
    assert got[("balanced_softmax", 1)] == ("new", None)
    assert {p.action for p in plan.to_run} == {"resume", "new"} and len(plan.to_run) == 3
    # a completed run of the same settings answers the cell, whatever failed before
    done = add_run(db, c[("balanced_softmax", 0)].resolved, "completed")
    assert actions(plan_sweep(db, spec_of(), code_version="v1"))[("balanced_softmax", 0)] \
        == "reuse"
    assert done


def test_estimate_from_comparable_timed_runs(db: Database) -> None:
    c = cells()
    # two completed ce runs of the same settings but other seeds: median 3 s/epoch
    for seed, spe in ((7, 2.0), (8, 4.0)):
        add_run(db, dict(c[("ce", 0)].resolved, seed=seed), "completed",
                seconds_per_epoch=spe)
    plan = plan_sweep(db, spec_of(), code_version="v1")
    est = {(p.cell.arm, p.cell.seed): p.estimate_seconds for p in plan.cells}
    assert est[("ce", 0)] == pytest.approx(3.0 * 4)
    assert est[("ce", 1)] == pytest.approx(3.0 * 4)
    assert est[("balanced_softmax", 0)] is None  # no comparable balanced_softmax run
    assert plan.estimate_seconds is None and plan.unestimated == 2

    # a balanced_softmax run at another batch size: only the coarse key matches
    bs = dict(c[("balanced_softmax", 0)].resolved, seed=9)
    bs["train"] = dict(bs["train"], batch_size=128)
    add_run(db, bs, "completed", seconds_per_epoch=1.5)
    plan = plan_sweep(db, spec_of(), code_version="v1")
    assert plan.unestimated == 0
    assert plan.estimate_seconds == pytest.approx(2 * 12.0 + 2 * 6.0)


def test_a_resumed_cell_is_estimated_for_its_epochs_left(db: Database) -> None:
    c = cells()
    add_run(db, dict(c[("ce", 0)].resolved, seed=7), "completed", seconds_per_epoch=2.0)
    add_run(db, c[("ce", 0)].resolved, "cancelled", epoch=0)  # one of four epochs done
    plan = plan_sweep(db, spec_of(), code_version="v1")
    p = next(p for p in plan.cells if (p.cell.arm, p.cell.seed) == ("ce", 0))
    assert p.action == "resume" and p.estimate_seconds == pytest.approx(2.0 * 3)


def test_timings_ignore_unfinished_and_untimed_runs(db: Database) -> None:
    c = cells()
    add_run(db, dict(c[("ce", 0)].resolved, seed=7), "failed")
    add_run(db, dict(c[("ce", 0)].resolved, seed=8), "completed")  # no seconds_per_epoch
    plan = plan_sweep(db, spec_of(), code_version="v1")
    assert plan.unestimated == 4
