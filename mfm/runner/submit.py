"""Queueing runs: the one path `mfm run` and mfm-tui both take.

Every config is checked (data present, transfer source resolvable and fitting, slot wish
possible) before any is queued, without loading torch (the caller may be mfm-tui); each run is
enqueued with its resolved config and the code version frozen, and
gets its checkpoint folder. Starting a supervisor is the caller's step
(``mfm.runner.control.RunControl.ensure_supervisor``) so a caller can queue many runs and start
one supervisor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mfm.runner.launch import (
    SlotWishError,
    check_host_wish,
    check_slot_wish,
    code_version,
    serving_slots,
    split_pin,
)
from mfm.runner.preflight import PreflightError, check_data, check_modulator

__all__ = ["SubmitError", "submit_runs"]


class SubmitError(ValueError):
    """Nothing was queued; one line naming the field (``slot: ...``, ``data.root: ...``)."""


def submit_runs(db: Any, *, db_target: str, runs_root: Path, configs: Sequence[Any],
                names: Sequence[str | None], dataset_spec_id: int | None = None,
                config_id: int | None = None, slot: str = "", host: str = "") -> list[int]:
    """Queue one run per validated Config; all or nothing. Returns the new run ids.
    ``host`` (or ``slot`` as ``HOST:SLOT``) pins the runs to that host's supervisor."""
    from mfm.config import config_to_dict
    from mfm.store import queue, repo

    try:
        host, slot = split_pin(slot, host)
        host, host_slots = check_host_wish(host, db)
        if host_slots is None:
            wish = check_slot_wish(slot, serving_slots(db, db_target, runs_root))
        else:
            wish = check_slot_wish(slot, host_slots or ["none"], where=f"host {host}")
        for cfg in configs:
            check_data(cfg)
            check_modulator(db, cfg)
    except (SlotWishError, PreflightError) as e:
        raise SubmitError(str(e)) from None
    version = code_version()
    ids = []
    for cfg, name in zip(configs, names, strict=True):
        run_id = queue.enqueue_run(db, config=config_to_dict(cfg), epochs_total=cfg.train.epochs,
                                   name=name, code_version=version,
                                   dataset_spec_id=dataset_spec_id, config_id=config_id,
                                   want_slot=wish or None, want_host=host or None)
        # the run's folder is recorded here, once; a run process given another one (a
        # supervisor with another runs folder) records that instead
        repo.update_run(db, run_id, checkpoint_dir=str(runs_root / str(run_id)))
        ids.append(run_id)
    return ids
