"""The app's only door to the records and the runner (``mfm.store``, ``mfm.runner``).

Every method blocks (SQL, files, processes), so the UI calls them from thread workers only.
They return plain values: the store's frozen dataclasses (``mfm.store.records``,
``mfm.store.views``), dicts, lists and the small frozen dataclasses below; no session, ORM row
or query is written here (the store's functions are). Importing anything from ``mfm.store``
loads SQLAlchemy, so it happens inside the methods, on first use: building a ``Services``
costs nothing and the first frame is not kept waiting (the store's types are imported for
annotations only).

A test builds one on a temporary database with a fixed clock, a fixed time zone and no GPU
probe, and hands it to the app's constructor.
"""

from __future__ import annotations

from typing import Any

from mfm_tui.services.backend import Backend, ServiceError, check_target
from mfm_tui.services.library import LibraryServices
from mfm_tui.services.results import (
    QueuedRuns,
    QueuedSweep,
    RunSeries,
    StatusInfo,
    SweepDetail,
    SweepsPoll,
)
from mfm_tui.services.runs import CHART_STEP_KEYS, RunServices
from mfm_tui.services.status import StatusServices
from mfm_tui.services.sweeps import SweepServices

__all__ = ["ServiceError", "Services", "check_target", "RunSeries", "StatusInfo", "QueuedRuns",
           "SweepDetail", "SweepsPoll", "QueuedSweep", "split_config", "CHART_STEP_KEYS",
           "Backend"]


class Services(RunServices, LibraryServices, SweepServices, StatusServices):
    """The backend of mfm-tui, for one database target.

    ``runs_root``: checkpoints and logs (default: as ``mfm`` decides, honouring MFM_RUNS_DIR).
    ``clock`` / ``localtime``: "now" and how timestamps become wall-clock fields (tests pass
    fixed ones). ``gpu_probe``: per-GPU utilisation (default NVML). ``start_supervisor``:
    whether queueing starts a detached supervisor when none serves the database;
    ``supervisor_args``: its ``mfm worker`` options (default: mfm.runner.serve's
    ``ON_DEMAND``, as ``mfm run`` starts it).
    """


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A resolved run config -> (its dataset spec, its named config)."""
    from mfm.specs import split_dataset_spec

    return split_dataset_spec(config)
