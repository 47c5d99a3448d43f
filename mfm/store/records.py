"""Plain, frozen values handed out by the repository: no ORM rows ever leave mfm.store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunRecord", "RunLink", "MetricPoint", "DatasetSpecRecord", "ConfigRecord",
           "STATUSES", "WAITING", "ACTIVE", "LIVE", "RESUMABLE", "TERMINAL_STATUSES",
           "check_status", "WAIT_PREFIX", "RESTART_NOTE", "wait_note", "job_note", "parent_of",
           "parent_wait_note"]


@dataclass(frozen=True)
class MetricPoint:
    step: int
    epoch: int
    value: float


@dataclass(frozen=True)
class RunRecord:
    id: int
    name: str | None
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    host: str | None
    pid: int | None
    device: str | None
    config: dict[str, Any]
    split_hash: str | None
    error: str | None
    summary: dict[str, Any] | None
    class_counts: dict[str, Any] | None
    confusion: list[Any] | None
    epochs_total: int
    epoch: int | None
    checkpoint_dir: str | None
    log_path: str | None
    heartbeat_at: float | None
    dataset_spec_id: int | None
    config_id: int | None
    queued_at: float | None = None
    slot: str | None = None
    proc_start: str | None = None
    cancel_requested_at: float | None = None
    resume_requested: bool = False
    attempt: int = 0
    code_version: str | None = None
    want_slot: str | None = None
    latest: dict[str, float] = field(default_factory=dict)
    note: str | None = None
    tags: tuple[str, ...] = ()
    want_host: str | None = None
    job_id: str | None = None  # the scheduler's job holding the run (Slurm), if any
    job_state: str | None = None  # the scheduler's last word on that job
    parent_id: int | None = None  # the run whose weights this one starts from (init_from)

    @property
    def method(self) -> str:
        """The method's name from the resolved config, or "?"."""
        method = self.config.get("method")
        return str(method.get("name", "?")) if isinstance(method, dict) else "?"

    @property
    def dataset(self) -> str:
        """The dataset's name from the resolved config, or "?"."""
        data = self.config.get("data")
        return str(data.get("name", "?")) if isinstance(data, dict) else "?"


@dataclass(frozen=True)
class RunLink:
    """Another run as a run's lineage names it: its id, name and status."""

    id: int
    name: str | None
    status: str


@dataclass(frozen=True)
class DatasetSpecRecord:
    id: int
    name: str
    spec: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class ConfigRecord:
    id: int
    name: str
    version: int
    config: dict[str, Any]
    created_at: float


STATUSES = ("created", "queued", "starting", "running", "completed", "failed", "cancelled", "lost")
"""Every status a run can have, in lifecycle order."""

# Groups of statuses: the one home of these rules (the queue, the supervisor, the CLI, the
# sweeps and the TUI import them).

WAITING = ("queued", "created")
"""Not started yet: in the queue (or being enqueued); cancelling one ends it at once."""

ACTIVE = ("starting", "running")
"""A process holds the run: it must be cancelled (and have stopped) before it is deleted."""

LIVE = (*WAITING, *ACTIVE)
"""Not finished: the run still changes by itself, and can be cancelled."""

RESUMABLE = ("cancelled", "failed", "lost")
"""Ended without completing: can be queued again to resume from its last checkpoint."""

TERMINAL_STATUSES = ("completed", "failed", "cancelled", "lost")
"""Statuses a run ends in (the queue's transitions stamp finished_at on them)."""


def check_status(status: str, allowed: tuple[str, ...] = STATUSES) -> str:
    """``status`` if it is one of ``allowed``, else ValueError naming the choices."""
    if status not in allowed:
        raise ValueError(f"unknown status {status!r} (one of: {', '.join(allowed)})")
    return status


# -- where a run waits (mfm runs' "where" column and the TUI's) ---------------------------------

#: how a queued run's ``error`` starts while it waits for something (a host that can read its
#: checkpoint, a Slurm submission that works)
WAIT_PREFIX = "waits for "


def wait_note(rec: RunRecord, position: int | None) -> str:
    """Where a queued run waits, for ``mfm runs``: its place in the queue, the host and slot
    it asks for, or the checkpoint no supervisor so far could read."""
    wish = [f"host {rec.want_host}"] if rec.want_host else []
    wish += [rec.want_slot] if rec.want_slot else []
    text = f"#{position if position is not None else '?'} in queue"
    if wish:
        text += f", wants {' '.join(wish)}"
    if rec.error and rec.error.startswith(WAIT_PREFIX):
        text += f"; {rec.error}"
    return text


def parent_of(config: dict[str, Any]) -> int | None:
    """The parent run a resolved config names (``train.init_from`` as a run id), or None: from
    scratch, or an ``arm:NAME`` that only a sweep resolves. The one reading of the key that
    the records make (``runs.parent_id``)."""
    from mfm.lineage import parent_id

    train = config.get("train")
    ref = train.get("init_from") if isinstance(train, dict) else None
    return parent_id(ref) if isinstance(ref, str) else None


def parent_wait_note(parent_id: int, parent_status: str) -> str:
    """A queued run's ``error`` while its parent has not completed (``WAIT_PREFIX`` first, so
    ``wait_note`` shows it): still to run, or ended without completing (then the child waits
    until the parent is resumed and completes, or is cancelled)."""
    if parent_status in RESUMABLE:
        return (f"{WAIT_PREFIX}run {parent_id} ({parent_status}): it starts once run "
                f"{parent_id} is resumed and completes (mfm resume {parent_id}), or cancel it")
    return f"{WAIT_PREFIX}run {parent_id} ({parent_status}) to complete"


#: how a run's ``error`` starts while it waits for its scheduler's job to start it again
RESTART_NOTE = "waits for its Slurm job to restart"


def job_note(rec: RunRecord) -> str:
    """Where a run held by a scheduler's job is, for ``mfm runs``: the job and Slurm's last
    word on it (``job 12 PENDING (Priority)``), and whether it waits to restart."""
    if not rec.job_id:
        return ""
    text = f"job {rec.job_id}"
    if rec.job_state:
        text += f" {rec.job_state}"
    if rec.status == "starting" and rec.error and rec.error.startswith(RESTART_NOTE):
        text += f"; {rec.error}"
    return text
