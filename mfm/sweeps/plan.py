"""Planning a sweep against the records: which cells a finished run already answers, which
are under way, which need a run, and what the rest will cost. Torch-free.

A cell's action:
- ``reuse``: a completed run with the same resolved config (same code version) answers it;
- ``stale``: such a run exists but was trained by another code version: reused and flagged,
  or rerun with ``rerun_stale``;
- ``active``: a run with the same config is queued or running;
- ``resume``: its run was cancelled or lost (a crash): it is resumed from its checkpoint;
- ``failed``: its run failed (``mfm sweep resume`` retries it);
- ``new``: nothing answers it: a new run is queued.

A cell with a parent cell (``train.init_from = "arm:NAME"``, :mod:`mfm.sweeps.lineage`) is
planned after it: its identity is its config with ``train.init_from`` set to the run that
answers the parent cell (whatever that run's state: a child queued after a running or failed
parent waits for it in the queue), and it is ``new`` while the parent cell has no run yet.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mfm.specs import ConfigRefError, parse_config_ref
from mfm.store import Database, RunRecord, repo
from mfm.store.hashing import config_hash
from mfm.store.records import LIVE
from mfm.store.sweeps import runs_by_hash
from mfm.sweeps.lineage import parent_cells, parents_first, with_parent_run
from mfm.sweeps.spec import Cell, SweepError, SweepSpec, expand
from mfm.text import visible

__all__ = ["CellPlan", "SweepPlan", "plan_sweep", "resolve_base", "duration_text", "ACTIONS",
           "TO_RUN"]

ACTIONS = ("reuse", "stale", "active", "resume", "failed", "new")
TO_RUN = ("new", "resume")
_INTERRUPTED = ("cancelled", "lost")


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    config_hash: str
    action: str
    run: RunRecord | None          # the run that answers (or will be resumed), if any
    estimate_seconds: float | None  # what running it will cost, for new / resume
    parent: int | None = None      # the index of its parent cell (train.init_from = arm:NAME)


@dataclass(frozen=True)
class SweepPlan:
    spec: SweepSpec
    cells: list[CellPlan]
    skipped: list[str] = field(default_factory=list)   # cells skip_invalid left out, and why
    order: tuple[int, ...] = ()    # cell indices, parents before children (empty: as listed)

    def count(self, action: str) -> int:
        return sum(1 for c in self.cells if c.action == action)

    @property
    def to_run(self) -> list[CellPlan]:
        """The cells to queue (or train), every parent cell before its children."""
        by_index = {c.cell.index: c for c in self.cells}
        ordered = [by_index[i] for i in self.order if i in by_index] if self.order \
            else self.cells
        return [c for c in ordered if c.action in TO_RUN]

    @property
    def estimate_seconds(self) -> float | None:
        """Seconds for every cell still to run (None if no comparable run was ever timed)."""
        costs = [c.estimate_seconds for c in self.to_run]
        if not costs or any(c is None for c in costs):
            return None
        return float(sum(c for c in costs if c is not None))

    @property
    def unestimated(self) -> int:
        return sum(1 for c in self.to_run if c.estimate_seconds is None)

    def summary(self, *, failed_hint: str = "mfm sweep resume retries them") -> str:
        """The plan in one line: cells, arms, reused, to run, the estimated cost (what
        ``mfm sweep plan`` and the TUI's plan both say)."""
        parts = [f"{len(self.cells)} cells in {len({c.cell.arm for c in self.cells})} arms"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} left out by skip_invalid (the rules refuse them)")
        for action, words in (("reuse", "reused"), ("stale", "reused from another code version "
                                                     "(--rerun-stale reruns them)"),
                              ("active", "already queued or running"), ("resume", "to resume"),
                              ("failed", f"failed ({failed_hint})"), ("new", "to run")):
            if n := self.count(action):
                parts.append(f"{n} {words}")
        est = self.estimate_seconds
        if not self.to_run:
            parts.append("nothing to run")
        elif est is not None:
            parts.append(f"estimated {duration_text(est)} of training (one slot)")
        elif self.unestimated < len(self.to_run):
            parts.append(f"no timing for {self.unestimated} of them yet")
        else:
            parts.append("no comparable run timed yet: no estimate")
        return "; ".join(parts)

    def grid(self) -> dict[str, Any]:
        """What the records keep of the plan: the axes, the arms and each cell's settings."""
        return {"grid": self.spec.grid,
                "linked": {k: [{"label": lab, **d} for lab, d in entries]
                           for k, entries in self.spec.linked},
                "arms": [a for a, _ in self.spec.arms], "skipped": len(self.skipped),
                "exclude": self.spec.exclude,
                "cells": [{"idx": c.cell.index, "arm": c.cell.arm, "seed": c.cell.seed,
                           "overrides": c.cell.overrides, "hash": c.config_hash}
                          for c in self.cells]}


def duration_text(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def resolve_base(db: Database, spec: SweepSpec) -> dict[str, Any]:
    """The saved dataset spec and method config a sweep names, merged (spec under config)."""
    base: dict[str, Any] = {}
    if spec.dataset:
        rec = repo.get_dataset_spec(db, spec.dataset)
        if rec is None:
            names = ", ".join(r.name for r in repo.list_dataset_specs(db)) or "none saved"
            raise SweepError(f"dataset: no saved dataset spec {visible(repr(spec.dataset), 80)} "
                             f"(have: {visible(names, 400)})")
        base.update(rec.spec)
    if spec.config:
        try:
            ref = parse_config_ref(spec.config)
        except ConfigRefError as e:
            raise SweepError(f"config: {e}") from None
        crec = repo.get_config(db, ref.name, ref.version)
        if crec is None:
            names = ", ".join(r.name for r in repo.list_configs(db)) or "none saved"
            raise SweepError(f"config: no saved config {visible(repr(spec.config), 80)} "
                             f"(have: {visible(names, 400)})")
        for k, v in crec.config.items():
            base[k] = {**base.get(k, {}), **v} if isinstance(v, dict) else v
    return base


SOURCE_PREFIX = "sweep:"


def resolve_sources(db: Database, cell: Cell) -> Cell:
    """``mfm.modulator_from = "sweep:NAME:ARM"``: the completed run of that sweep's arm at this
    cell's seed (a transfer study: the modulator trained by one sweep, reused in another). The
    reference becomes the run id, so the cell's config (and hash) name the run it uses."""
    cfg = cell.config
    ref = cfg.mfm.modulator_from if cfg.method.name == "mfm" else ""
    if not ref.startswith(SOURCE_PREFIX):
        return cell
    where = f"cell {cell.index + 1} ({visible(cell.arm, 120)}, seed {cell.seed})"
    name, sep, arm = ref[len(SOURCE_PREFIX):].partition(":")
    if not sep or not name or not arm:
        raise SweepError(f"{where}: mfm.modulator_from: expected sweep:NAME:ARM "
                         f"(got {visible(repr(ref), 80)})")
    from mfm.store import sweeps as sweep_store

    source = sweep_store.get_sweep(db, name)
    if source is None:
        raise SweepError(f"{where}: mfm.modulator_from: no sweep {visible(repr(name), 80)} "
                         "(run it first)")
    match = [c for c in sweep_store.sweep_cells(db, source.id)
             if c.arm == arm and c.seed == cell.seed]
    done = [c.run for c in match if c.run is not None and c.run.status == "completed"]
    if not done:
        raise SweepError(f"{where}: mfm.modulator_from: sweep {visible(name, 80)} has no "
                         f"completed run of arm {visible(repr(arm), 80)} at seed {cell.seed} "
                         "(run that sweep first)")
    new_cfg = dataclasses.replace(cfg, mfm=dataclasses.replace(cfg.mfm,
                                                               modulator_from=str(done[0].id)))
    overrides = {**cell.overrides, "mfm.modulator_from": str(done[0].id)}
    return dataclasses.replace(cell, config=new_cfg, overrides=overrides)


_Key = tuple[Any, ...]


def _comparable_key(config: Mapping[str, Any], exact: bool) -> _Key:
    data = config.get("data", {})
    base = (config.get("method", {}).get("name"), data.get("name"),
            config.get("model", {}).get("name"))
    if not exact:
        return base
    return (*base, data.get("imbalance_factor"), data.get("head_count"),
            data.get("meta_per_class"), config.get("train", {}).get("batch_size"),
            config.get("mfm", {}).get("meta_interval"),
            config.get("mfm", {}).get("virtual_params"))


def _timings(runs: Sequence[RunRecord]) -> tuple[dict[_Key, float], dict[_Key, float]]:
    """Median recorded seconds per epoch by (exact, coarse) comparable key."""
    exact: dict[_Key, list[float]] = {}
    coarse: dict[_Key, list[float]] = {}
    for r in runs:
        spe = (r.summary or {}).get("seconds_per_epoch")
        if not isinstance(spe, (int, float)) or spe <= 0:
            continue
        exact.setdefault(_comparable_key(r.config, True), []).append(float(spe))
        coarse.setdefault(_comparable_key(r.config, False), []).append(float(spe))
    return ({k: statistics.median(v) for k, v in exact.items()},
            {k: statistics.median(v) for k, v in coarse.items()})


def _match(runs: Sequence[RunRecord], code_version: str | None,
           rerun_stale: bool) -> tuple[str, RunRecord | None]:
    """A cell's action and the run it names, from the runs with its config hash."""
    done = [r for r in runs if r.status == "completed"]
    fresh = [r for r in done if r.code_version == code_version or code_version is None]
    active = [r for r in runs if r.status in LIVE]
    interrupted = [r for r in runs if r.status in _INTERRUPTED]
    failed = [r for r in runs if r.status == "failed"]
    if fresh:
        return "reuse", fresh[0]
    if done and not rerun_stale:
        return "stale", done[0]
    if active:
        return "active", active[0]
    if interrupted:
        return "resume", interrupted[0]
    if failed and not done:
        return "failed", failed[0]
    return "new", None


def plan_sweep(db: Database, spec: SweepSpec, *, code_version: str | None,
               rerun_stale: bool = False, max_cells: int | None = None) -> SweepPlan:
    """Expand and validate every cell (SweepError names the cell), then match the records:
    cells without a parent cell first, then each generation of children against the runs
    their parents' cells name (one query per generation)."""
    skipped: list[str] = []
    cells = expand(spec, base_dict=resolve_base(db, spec), max_cells=max_cells, skipped=skipped)
    cells = [resolve_sources(db, c) for c in cells]
    links = parent_cells(cells)
    order = parents_first(range(len(cells)), links)
    exact, coarse = _timings(repo.list_runs(db, status="completed", confusion=False))
    planned: dict[int, CellPlan] = {}
    pending = list(order)
    while pending:
        ready = [i for i in pending if links.get(i) is None or links[i] in planned]
        taken = set(ready)
        pending = [i for i in pending if i not in taken]
        now: list[Cell] = []
        for i in ready:
            cell = cells[i]
            parent = planned[links[i]].run if i in links else None
            now.append(with_parent_run(cell, parent.id) if parent is not None else cell)
        resolved = [c.resolved for c in now]
        hashes = [config_hash(r) for r in resolved]
        found = runs_by_hash(db, hashes)  # a child of a cell without a run yet finds none
        for cell, conf, h in zip(now, resolved, hashes, strict=True):
            run: RunRecord | None
            action, run = _match(found.get(h, []), code_version, rerun_stale)
            estimate = None
            if action in TO_RUN:
                spe = exact.get(_comparable_key(conf, True)) or coarse.get(
                    _comparable_key(conf, False))
                if spe is not None:
                    left = cell.config.train.epochs
                    if run is not None and run.epoch is not None:
                        left = max(0, left - (run.epoch + 1))
                    estimate = spe * left
            planned[cell.index] = CellPlan(cell=cell, config_hash=h, action=action, run=run,
                                           estimate_seconds=estimate,
                                           parent=links.get(cell.index))
    return SweepPlan(spec=spec, cells=[planned[i] for i in range(len(cells))],
                     skipped=skipped, order=tuple(order))
