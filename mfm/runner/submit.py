"""Queueing runs: the one path `mfm run` and mfm-tui both take.

Every config is checked (data present, transfer source resolvable and fitting, the parent run
of ``train.init_from`` there and fitting, slot wish possible) before any is queued, without
loading torch (the caller may be mfm-tui); each run is enqueued with its resolved config and
the code version frozen, and gets its checkpoint folder. Starting a supervisor is the caller's step
(``mfm.runner.control.RunControl.ensure_supervisor``) so a caller can queue many runs and start
one supervisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mfm.lineage import classes_problem, fit_problem, with_parent
from mfm.runner.launch import (
    SlotWishError,
    check_host_wish,
    check_slot_wish,
    code_version,
    serving_slots,
    split_pin,
)
from mfm.runner.preflight import PreflightError, check_data, check_modulator, check_parent
from mfm.store.records import LIVE

__all__ = ["SubmitError", "submit_runs"]


class SubmitError(ValueError):
    """Nothing was queued; one line naming the field (``slot: ...``, ``data.root: ...``).
    ``index``: the config at fault (its position in ``configs``), None when the fault is not
    one config's (the slot or host wish)."""

    def __init__(self, message: str, index: int | None = None):
        self.index = index
        super().__init__(message)


def _check(db: Any, configs: Sequence[Any], after: Sequence[int | None],
           parent_waits: tuple[str, ...]) -> None:
    """Each config's data (previewed once per distinct data section), transfer source and
    parent; SubmitError with the index of the first config at fault."""
    from mfm.config import config_to_dict

    previews: dict[str, dict[str, Any]] = {}
    counts: list[dict[str, Any]] = []
    for i, cfg in enumerate(configs):
        try:
            key = repr(sorted(config_to_dict(cfg).get("data", {}).items()))
            if key not in previews:
                previews[key] = check_data(cfg)
            counts.append(previews[key])
            check_modulator(db, cfg)
            j = after[i]
            if j is None:
                check_parent(db, cfg, counts=counts[i], waits=parent_waits)
                continue
            if not 0 <= j < i:
                raise ValueError(f"after[{i}] = {j}: a parent is queued before its child")
            why = (fit_problem(config_to_dict(configs[j]), cfg)
                   or classes_problem(len(counts[j].get("train", [])),
                                      len(counts[i].get("train", []))))
            if why:
                raise PreflightError(f"train.init_from: the parent queued with it {why}")
        except PreflightError as e:
            raise SubmitError(str(e), index=i) from None


def submit_runs(db: Any, *, db_target: str, runs_root: Path, configs: Sequence[Any],
                names: Sequence[str | None], dataset_spec_id: int | None = None,
                config_id: int | None = None, slot: str = "", host: str = "",
                after: Sequence[int | None] | None = None,
                parent_waits: tuple[str, ...] = LIVE) -> list[int]:
    """Queue one run per validated Config; all or nothing. Returns the new run ids.
    ``host`` (or ``slot`` as ``HOST:SLOT``) pins the runs to that host's supervisor.

    A config with ``train.init_from`` (a run id) waits in the queue for that run when it is
    not completed yet; its status must be completed or one of ``parent_waits`` (default: live,
    queued or running). ``after``: per config, the index of an earlier config of this call
    whose new run is its parent (``train.init_from`` is set to that run's id as it is queued:
    a sweep's stage 2 queued with its stage 1); such a pair is checked against each other
    (network and class count) instead of against the records."""
    from mfm.config import config_to_dict
    from mfm.store import queue, repo

    after = list(after) if after is not None else [None] * len(configs)
    if len(after) != len(configs):
        raise ValueError(f"after has {len(after)} entries for {len(configs)} configs")
    try:
        host, slot = split_pin(slot, host)
        host, host_slots = check_host_wish(host, db)
        if host_slots is None:
            wish = check_slot_wish(slot, serving_slots(db, db_target, runs_root))
        else:
            wish = check_slot_wish(slot, host_slots or ["none"], where=f"host {host}")
    except SlotWishError as e:
        raise SubmitError(str(e)) from None
    _check(db, configs, after, parent_waits)
    version = code_version()
    ids: list[int] = []
    for cfg, name, j in zip(configs, names, after, strict=True):
        if j is not None:
            cfg = with_parent(cfg, ids[j])
        run_id = queue.enqueue_run(db, config=config_to_dict(cfg), epochs_total=cfg.train.epochs,
                                   name=name, code_version=version,
                                   dataset_spec_id=dataset_spec_id, config_id=config_id,
                                   want_slot=wish or None, want_host=host or None)
        # the run's folder is recorded here, once; a run process given another one (a
        # supervisor with another runs folder) records that instead
        repo.update_run(db, run_id, checkpoint_dir=str(runs_root / str(run_id)))
        ids.append(run_id)
    return ids
