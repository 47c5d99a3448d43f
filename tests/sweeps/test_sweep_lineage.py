"""Parent arms in sweep files (``"train.init_from" = "arm:NAME"``): which cell a child cell
starts from (the same seed and the same grid values), the refusals (unknown arm, itself, a
cycle, no cell or several at its position, another network), planning (parents first; a child
is new until its parent cell has a run, then its identity names that run) and queueing
(parents before children, each child's parent_id its parent cell's new run)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mfm.store import Database, queue, repo
from mfm.store import sweeps as sweep_store
from mfm.store.hashing import config_hash
from mfm.sweeps.lineage import parent_cells
from mfm.sweeps.plan import plan_sweep
from mfm.sweeps.queueing import SweepQueueError, queue_sweep
from mfm.sweeps.spec import SweepError, expand, parse_sweep

BASE = """
name = "two-stage"
device = "cpu"
data.name = "digits"
model.name = "resnet_tiny"
method.name = "balanced_softmax"
train.epochs = 1
train.batch_size = 64
"""

STAGE2 = """
[[arm]]
name = "crt"
"method.name" = "ce"
"train.init_from" = "arm:stage1"
"train.trainable" = "classifier"
"data.sampler" = "class_balanced"
"""

STAGE1 = """
[[arm]]
name = "stage1"
"method.name" = "ce"
"""

# the child's arm comes first in the file: the plan still puts its parents first
SWEEP = BASE + """
[grid]
seed = [0, 1]
"data.imbalance_factor" = [10, 20]
""" + STAGE2 + STAGE1


def spec_of(text: str = SWEEP):
    return parse_sweep(tomllib.loads(text), text=text)


def by_index(text: str = SWEEP):
    return {c.index: c for c in expand(spec_of(text))}


@pytest.fixture
def db(db_path: Path):
    with Database(str(db_path)) as d:
        yield d


def _key(cell) -> tuple:
    return (cell.arm_table or cell.arm, cell.seed, cell.config.data.imbalance_factor)


def test_a_child_pairs_with_the_parent_cell_at_its_position():
    cells = by_index()
    links = parent_cells(list(cells.values()))
    crt = [c for c in cells.values() if c.arm_table == "crt"]
    assert len(crt) == 4 and set(links) == {c.index for c in crt}
    for c in crt:
        parent = cells[links[c.index]]
        assert parent.arm_table == "stage1"
        assert (parent.seed, parent.config.data.imbalance_factor) == (
            c.seed, c.config.data.imbalance_factor)
    # the grid's own arms (the base, balanced_softmax here) start from scratch
    assert all(c.index not in links for c in cells.values() if c.arm_table is None)


def test_a_child_that_sets_a_grid_key_itself_pairs_with_that_value():
    own = STAGE2.replace('"method.name" = "ce"', '"method.name" = "ce"\n'
                         '"data.imbalance_factor" = 20')
    text = BASE + '[grid]\nseed = [0, 1]\n"data.imbalance_factor" = [10, 20]\n' + own + STAGE1
    cells = by_index(text)
    links = parent_cells(list(cells.values()))
    crt = [c for c in cells.values() if c.arm_table == "crt"]
    assert len(crt) == 2  # not crossed with the axis it sets
    for c in crt:
        assert _key(cells[links[c.index]]) == ("stage1", c.seed, 20.0)


def test_children_crossed_with_an_axis_their_parent_sets_share_it():
    text = BASE + '[grid]\nseed = [0]\n"optim.lr" = [0.1, 0.01]\n' + STAGE2 + \
        STAGE1.replace('"method.name" = "ce"', '"method.name" = "ce"\n"optim.lr" = 0.05')
    cells = by_index(text)
    links = parent_cells(list(cells.values()))
    crt = [c for c in cells.values() if c.arm_table == "crt"]
    (stage1,) = [c for c in cells.values() if c.arm_table == "stage1"]
    assert len(crt) == 2 and {links[c.index] for c in crt} == {stage1.index}


@pytest.mark.parametrize(("text", "needles"), [
    (BASE + '[grid]\nseed = [0]\n' + STAGE2.replace("arm:stage1", "arm:nope") + STAGE1,
     ("cell 1 (crt, seed 0): train.init_from: no [[arm]] named 'nope'", "names: crt, stage1")),
    (BASE + '[grid]\nseed = [0]\n' + STAGE2.replace("arm:stage1", "arm:crt") + STAGE1,
     ("cell 1 (crt, seed 0): train.init_from: arm:crt is this cell's own arm",)),
    (BASE + '[grid]\nseed = [0]\n' + STAGE2 + STAGE1.replace(
        '"method.name" = "ce"', '"method.name" = "ce"\n"train.init_from" = "arm:crt"\n'
        '"train.trainable" = "all"'),
     ("train.init_from: a cycle of parent arms (arm 'crt' → arm 'stage1' → arm 'crt'",)),
    (BASE + '[grid]\nseed = [0, 1]\n' + STAGE2 + STAGE1 + '[[exclude]]\n"seed" = 1\n'
     '"train.init_from" = ""\n',
     ("cell 2 (crt, seed 1): train.init_from: arm 'stage1' has no cell at this cell's position "
      "(seed=1)",)),
    (BASE + '[grid]\nseed = [0]\n"mfm.meta_interval" = [5, 10]\n' + STAGE2 +
     STAGE1.replace('"ce"', '"mfm"'),
     ("train.init_from: arm 'stage1' has 2 cells at this cell's position (cells",
      "differ in keys that mean nothing for this cell's method")),
    (BASE + '[grid]\nseed = [0]\n' + STAGE2 + STAGE1.replace(
        '"method.name" = "ce"', '"method.name" = "ce"\n"model.name" = "resnet8"'),
     ("train.init_from: its parent cell 2 (stage1, seed 0) is a resnet8, this run builds a "
      "resnet_tiny",)),
    (BASE + '[grid]\nseed = [0]\n' + STAGE2 + STAGE1.replace('"ce"', '"ldam_drw"'),
     ("has a cosine classifier (ldam_drw), this run builds a linear one",)),
])
def test_bad_parent_arms_are_refused_in_one_line(text, needles):
    with pytest.raises(SweepError) as info:
        parent_cells(expand(spec_of(text)))
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, (needle, message)


def test_plan_puts_parents_first_and_a_child_is_new_until_its_parent_has_a_run(db):
    plan = plan_sweep(db, spec_of(), code_version="v1")
    index = {c.cell.index: c for c in plan.cells}
    order = [c.cell.index for c in plan.to_run]
    for c in plan.cells:
        if c.parent is not None:
            assert order.index(index[c.parent].cell.index) < order.index(c.cell.index)
            assert c.action == "new" and c.cell.config.train.init_from == "arm:stage1"
    assert sum(1 for c in plan.cells if c.parent is not None) == 4


def test_queue_sweep_queues_parents_first_and_records_their_ids(db, tmp_path):
    plan = plan_sweep(db, spec_of(), code_version="v1")
    done = queue_sweep(db, plan, db_target=str(tmp_path / "x.db"), runs_root=tmp_path / "runs",
                       code_version="v1")
    cells = sweep_store.sweep_cells(db, done.sweep_id)
    by_idx = {c.idx: c for c in cells}
    assert len(cells) == 12 and all(c.run is not None for c in cells)
    for p in plan.cells:
        rec = by_idx[p.cell.index].run
        if p.parent is None:
            assert rec.parent_id is None
            continue
        parent_run = by_idx[p.parent].run
        assert rec.parent_id == parent_run.id and parent_run.id < rec.id
        assert rec.config["train"]["init_from"] == str(parent_run.id)
        # the cell is recorded under the identity its run has
        assert by_idx[p.cell.index].config_hash == config_hash(rec.config)
        assert [k.id for k in repo.children(db, parent_run.id)] == [rec.id]
    # planned again: every cell (the children too) is answered by its queued run
    again = plan_sweep(db, spec_of(), code_version="v1")
    assert {c.action for c in again.cells} == {"active"}
    assert {c.cell.index: c.run.id for c in again.cells} == {i: c.run.id for i, c in
                                                             by_idx.items()}
    # the stage-1 run fails: its child stays queued, waiting; planned again, nothing new
    stage1 = next(c.run.id for c in cells if c.arm.startswith("stage1"))
    queue.transition(db, stage1, "starting", allowed_from=("queued",))
    queue.transition(db, stage1, "failed", allowed_from=("starting",))
    third = plan_sweep(db, spec_of(), code_version="v1")
    assert third.count("failed") == 1 and third.count("new") == 0


def test_a_child_of_a_finished_parent_cell_is_checked_against_its_run(db, tmp_path):
    """A parent cell answered by a completed run whose checkpoint is gone: refused, naming
    the child's cell, before anything is queued."""
    text = BASE + '[grid]\nseed = [0]\n' + STAGE2 + STAGE1
    plan = plan_sweep(db, spec_of(text), code_version="v1")
    stage1 = next(c for c in plan.cells if c.cell.arm_table == "stage1")
    rid = queue.enqueue_run(db, config=stage1.cell.resolved, epochs_total=1, code_version="v1")
    repo.update_run(db, rid, checkpoint_dir=str(tmp_path / "runs" / str(rid)))
    queue.transition(db, rid, "starting", allowed_from=("queued",))
    queue.transition(db, rid, "completed", allowed_from=("starting",))
    plan = plan_sweep(db, spec_of(text), code_version="v1")
    child = next(c for c in plan.cells if c.cell.arm_table == "crt")
    assert child.cell.config.train.init_from == str(rid) and child.action == "new"
    before = len(repo.list_runs(db))
    with pytest.raises(SweepQueueError) as info:
        queue_sweep(db, plan, db_target=str(tmp_path / "x.db"), runs_root=tmp_path / "runs",
                    code_version="v1")
    assert str(info.value).startswith(f"cell 1 (crt, seed 0): train.init_from: run {rid}'s "
                                      "last.pt")
    assert "is missing" in str(info.value)
    assert len(repo.list_runs(db)) == before and sweep_store.list_sweeps(db) == []
