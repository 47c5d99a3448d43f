"""Parent arms: a sweep's stage-2 cells start from the runs of its stage-1 cells.

In a sweep file an arm (or the base) may set ``"train.init_from" = "arm:NAME"``: each of its
cells starts from the run of one cell of the ``[[arm]]`` table named NAME — its parent cell.

Which cell (the "same cell position"): the parent of a cell C is the one cell P of arm NAME
such that

- P and C have the same ``seed``, and
- for every key a ``[grid]`` axis sets in P (the seed axis's keys too, e.g. ``data.seed`` of a
  linked ``"seed,data.seed"`` axis; not the keys arm NAME sets itself), C has the same value,
  unless the key means nothing for C's method (``mfm.*`` for a ce child).

So a child crossed with the same axes as its parent pairs with it point by point; a child
that sets such a key itself (``data.imbalance_factor = 100``) pairs with the parent cell of
that value; and a child crossed with an axis its parent is not (several stage-2 variants of
one stage-1 cell) shares that parent. No matching cell, or more than one, is refused in one
line naming the cell; so are a NAME that is no ``[[arm]]`` of the file, an arm that names
itself, and a cycle (stage 2 of stage 3 of stage 2). Only ``[[arm]]`` tables can be parents:
the grid's own arms have no name to give.

Both cells must build the same network (``mfm.lineage.fit_problem``); the class count is
checked when the pair is queued. Planning and queueing (:mod:`mfm.sweeps.plan`,
:mod:`mfm.sweeps.queueing`) put parents before children, and a child's identity is its config
with ``train.init_from`` set to its parent cell's run id (a new child while that cell has no
run yet). Torch-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mfm.config import applies_to
from mfm.lineage import arm_name, fit_problem, with_parent
from mfm.sweeps.model import SEED_KEY, Cell, SweepError, show
from mfm.text import visible

__all__ = ["parent_cells", "parents_first", "with_parent_run", "where"]


def where(cell: Cell) -> str:
    """How an error names a cell: ``cell 3 (crt · imbalance_factor=10, seed 1)``."""
    return f"cell {cell.index + 1} ({visible(cell.arm, 120)}, seed {cell.seed})"


def _flat(cell: Cell) -> dict[str, Any]:
    from mfm.config import _flatten_config  # the one flattening of a Config

    return _flatten_config(cell.config)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) \
        else bool(a == b)


def _position(cell: Cell, parent: Cell, flat: Mapping[int, dict[str, Any]]) -> list[str]:
    """The keys at which ``parent`` is not at ``cell``'s position (empty: it is)."""
    mine, theirs = flat[cell.index], flat[parent.index]
    keys = dict.fromkeys((SEED_KEY, *parent.axis_keys))
    return [k for k in keys
            if ((methods := applies_to(k)) is None or cell.config.method.name in methods)
            and not _same(mine.get(k), theirs.get(k))]


def _describe(cell: Cell, keys: Sequence[str], flat: Mapping[int, dict[str, Any]]) -> str:
    values = flat[cell.index]
    return ", ".join(f"{k}={show(values.get(k))}" for k in keys)


def parent_cells(cells: Sequence[Cell]) -> dict[int, int]:
    """Cell index -> the index of its parent cell, for every cell whose ``train.init_from`` is
    ``arm:NAME`` (the rule in this module's docstring); SweepError, naming the cell, for an
    unknown arm, an arm naming itself, a cycle of arms, a reference that matches no cell or
    several, or a parent whose network does not fit."""
    tables = {c.arm_table for c in cells if c.arm_table is not None}
    edges: dict[str, dict[str, Cell]] = {}  # arm -> the arms it starts from (and a cell)
    children = []
    for cell in cells:
        name = arm_name(cell.config.train.init_from)
        if name is None:
            continue
        head = f"{where(cell)}: train.init_from"
        if name == cell.arm_table:
            raise SweepError(f"{head}: arm:{visible(name, 80)} is this cell's own arm; a run "
                             "cannot start from itself")
        if name not in tables:
            known = ", ".join(sorted(visible(t, 40) for t in tables)) or "none"
            raise SweepError(f"{head}: no [[arm]] named {show(name)} in this sweep ([[arm]] "
                             f"names: {visible(known, 300)})")
        if cell.arm_table is not None:
            edges.setdefault(cell.arm_table, {}).setdefault(name, cell)
        children.append((cell, name))
    _check_cycles(edges)
    by_arm: dict[str, list[Cell]] = {}
    for c in cells:
        if c.arm_table is not None:
            by_arm.setdefault(c.arm_table, []).append(c)
    flat: dict[int, dict[str, Any]] = {}
    links: dict[int, int] = {}
    for cell, name in children:
        head = f"{where(cell)}: train.init_from"
        same_seed = [p for p in by_arm[name] if p.seed == cell.seed]  # seed: always compared
        for c in (cell, *same_seed):
            if c.index not in flat:
                flat[c.index] = _flat(c)
        found = [p for p in same_seed if not _position(cell, p, flat)]
        if not found:
            ours = [SEED_KEY, *dict.fromkeys(k for p in by_arm[name]
                                            for k in p.axis_keys if k != SEED_KEY)]
            raise SweepError(f"{head}: arm {show(name)} has no cell at this cell's position "
                             f"({_describe(cell, ours, flat)})")
        if len(found) > 1:
            cells_text = ", ".join(str(p.index + 1) for p in found[:6])
            raise SweepError(f"{head}: arm {show(name)} has {len(found)} cells at this cell's "
                             f"position (cells {cells_text}): they differ in keys that mean "
                             "nothing for this cell's method; set them in its arm, or exclude "
                             "all but one")
        parent = found[0]
        if why := fit_problem(parent.resolved, cell.config):
            raise SweepError(f"{head}: its parent {where(parent)} {why}")
        links[cell.index] = parent.index
    return links


def _check_cycles(edges: Mapping[str, Mapping[str, Cell]]) -> None:
    """SweepError naming a cell on a cycle of parent arms (A from B, B from A)."""
    done: set[str] = set()

    def visit(arm: str, path: list[str]) -> None:
        if arm in done:
            return
        for parent, cell in edges.get(arm, {}).items():
            if parent in path:
                loop = " → ".join(f"arm {show(a)}" for a in
                                  [*path[path.index(parent):], arm, parent])
                raise SweepError(f"{where(cell)}: train.init_from: a cycle of parent arms "
                                 f"({loop}, each starting from the next); a run cannot start "
                                 "from its own descendant")
            visit(parent, [*path, arm])
        done.add(arm)

    for arm in edges:
        visit(arm, [])


def parents_first(indices: Sequence[int], links: Mapping[int, int]) -> list[int]:
    """``indices`` in an order where every parent comes before its children (otherwise as
    given); ``links`` holds no cycle (:func:`parent_cells` refuses them)."""
    wanted = list(indices)
    member = set(wanted)
    out: list[int] = []
    placed: set[int] = set()

    def place(i: int) -> None:
        if i in placed:
            return
        parent = links.get(i)
        if parent is not None and parent in member:
            place(parent)
        placed.add(i)
        out.append(i)

    for i in wanted:
        place(i)
    return out


def with_parent_run(cell: Cell, run_id: int) -> Cell:
    """``cell`` with ``train.init_from`` set to its parent cell's run: its identity from then
    on (config hash)."""
    return dataclasses.replace(cell, config=with_parent(cell.config, run_id),
                               overrides={**cell.overrides, "train.init_from": str(run_id)})
