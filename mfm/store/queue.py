"""The run queue in the records: enqueue, atomic claims, state transitions guarded by the
state they start from (so a supervisor and a run process never overwrite each other's truth),
cancel and resume requests, and the workers table.

Lifecycle: queued → starting → running → completed | failed | cancelled | lost. Every
transition is one UPDATE ... WHERE status IN (...) in its own write transaction
(BEGIN IMMEDIATE on SQLite), stamped with its time. On PostgreSQL (supervisors on several
hosts) a claim locks the row it takes (SELECT ... FOR UPDATE SKIP LOCKED), and a
read-then-write of one run (cancel, resume) locks that run first (FOR UPDATE); SQLite ignores
both, its write lock already serialises every writer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Result, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from mfm.store.convert import run_record
from mfm.store.db import Database
from mfm.store.errors import NoSuchRun, QueueError, RunStateError
from mfm.store.hashing import config_hash
from mfm.store.models import Run, Worker
from mfm.store.records import (
    ACTIVE,
    RESTART_NOTE,
    RESUMABLE,
    WAIT_PREFIX,
    WAITING,
    RunRecord,
    job_note,
    parent_of,
    parent_wait_note,
    wait_note,
)

__all__ = ["ACTIVE", "QueueError", "NoSuchRun", "RunStateError", "WorkerRecord", "enqueue_run",
           "claim_next", "set_process", "transition", "queue_positions", "active_runs",
           "request_cancel", "request_resume",
           "upsert_worker", "worker_heartbeat", "stop_worker", "list_workers", "cancel_requested",
           "count_by_status", "needs_checkpoint", "wait_note", "WAIT_PREFIX",
           "stale_runs_elsewhere", "mark_lost_if_stale", "CHECKPOINT_FILE",
           "worker_last_seen", "set_job", "job_runs", "submit_failed", "stop_for_restart",
           "job_restarted", "set_job_state", "end_job_run", "job_note", "RESTART_NOTE"]

#: the file a resume continues from (mfm.engine.training.LAST; the store does not load torch)
CHECKPOINT_FILE = "last.pt"

#: how a queued run's ``error`` starts when a supervisor declined it and says what it waits for



def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (Session.execute is typed as Result; DML gives a
    CursorResult)."""
    return cast("CursorResult[Any]", result).rowcount


@dataclass(frozen=True)
class WorkerRecord:
    host: str
    pid: int
    proc_start: str | None
    started_at: float
    heartbeat_at: float
    slots: list[dict[str, Any]]
    stopped_at: float | None


def enqueue_run(db: Database, *, config: dict[str, Any], epochs_total: int,
                name: str | None = None, code_version: str | None = None,
                dataset_spec_id: int | None = None, config_id: int | None = None,
                want_slot: str | None = None, want_host: str | None = None) -> int:
    """A new run in the queue, its resolved config frozen now. ``want_slot``: only a slot of
    that name (``gpu1``, ``cpu0``) or on that GPU (``gpu1`` takes ``gpu1.0``, ``gpu1.1``)
    may claim it; None = any slot. ``want_host``: only the supervisor of that host may claim
    it; None = any host. Its parent (``runs.parent_id``) is the run ``train.init_from`` names,
    if any: it is not claimed before that run completes (:func:`claim_next`)."""
    now = time.time()
    run = Run(name=name, status="queued", created_at=now, queued_at=now,
              config_json=json.dumps(config), config_hash=config_hash(config),
              epochs_total=int(epochs_total),
              dataset_spec_id=dataset_spec_id, config_id=config_id, code_version=code_version,
              attempt=0, resume_requested=0, want_slot=want_slot or None,
              want_host=want_host or None, parent_id=parent_of(config))
    with db.session_scope() as session:
        session.add(run)
        session.flush()
        return run.id


def needs_checkpoint(resume_requested: Any, checkpoint_dir: str | None,
                     epoch: int | None) -> str | None:
    """The checkpoint file a queued run cannot start without, or None: a resume of a run that
    recorded epochs continues from ``checkpoint_dir/last.pt`` (without it, the run process
    would refuse to train over the recorded epochs)."""
    if not resume_requested or not checkpoint_dir or epoch is None:
        return None
    return f"{checkpoint_dir.rstrip('/')}/{CHECKPOINT_FILE}"


def claim_next(db: Database, *, host: str, slot: str,
               can_read: Callable[[str], bool] | None = None) -> RunRecord | None:
    """Take the oldest queued run for ``slot`` on ``host`` (queued → starting), or None:
    one that asks for no host or for ``host``, and for no slot, this slot, or this slot's GPU
    (``gpu1`` for ``gpu1.0``). A resume whose checkpoint ``can_read`` says this host cannot
    read is left for another host, and its ``error`` says what it waits for (``mfm runs``
    shows it). One write transaction: two supervisors never claim the same run (on
    PostgreSQL, concurrent claimers skip the row another one has locked and take the next).

    A run with a parent (``train.init_from``) waits for it: it is not claimed while its parent
    is in the records and not completed. Its ``error`` says what it waits for (``waits for
    run 5 (running) to complete``; for a parent that ended failed, cancelled or lost, that it
    starts once the parent is resumed and completes, or is cancelled): a waiting child is
    never failed or cancelled for its parent, so resuming the parent is enough to let it run.
    The notes are brought up to date by every claim. A parent deleted from the records no
    longer holds its child back: the child is claimed, and its run process refuses it (the
    parent's checkpoint cannot be resolved), recording it failed."""
    with db.session_scope() as session:
        claimed = _take(session, host=host, slot=slot, can_read=can_read)
        _note_waiting_children(session)
        return claimed


def _take(session: Session, *, host: str, slot: str,
          can_read: Callable[[str], bool] | None) -> RunRecord | None:
    """claim_next's claim, in the caller's transaction."""
    fits = {slot, slot.split(".")[0]}
    declined: list[int] = []
    parent = aliased(Run)
    waits = exists().where(parent.id == Run.parent_id, parent.status != "completed")
    while True:
        q = (select(Run.id, Run.resume_requested, Run.checkpoint_dir, Run.epoch, Run.error)
             .where(Run.status == "queued",
                    or_(Run.want_slot.is_(None), Run.want_slot.in_(fits)),
                    or_(Run.want_host.is_(None), Run.want_host == host),
                    or_(Run.parent_id.is_(None), ~waits)))
        if declined:
            q = q.where(Run.id.not_in(declined))
        row = session.execute(q.order_by(Run.queued_at, Run.id).limit(1)
                              .with_for_update(skip_locked=True)).first()
        if row is None:
            return None
        run_id, resume, ckpt_dir, epoch, error = row
        need = needs_checkpoint(resume, ckpt_dir, epoch)
        if need is not None and can_read is not None and not can_read(need):
            declined.append(run_id)
            note = f"{WAIT_PREFIX}a host that can read {need} (not {host})"
            if error != note:
                session.execute(update(Run).where(Run.id == run_id,
                                                  Run.status == "queued").values(error=note))
            continue
        done = _rowcount(session.execute(
            update(Run).where(Run.id == run_id, Run.status == "queued").values(
                status="starting", host=host, slot=slot, started_at=None,
                finished_at=None, pid=None, proc_start=None, error=None,
                job_id=None, job_state=None, heartbeat_at=time.time())))
        if not done:
            return None
        session.flush()
        run = session.get(Run, run_id)
        return None if run is None else run_record(run)


#: how a queued child's ``error`` starts while it waits for its parent (parent_wait_note)
_PARENT_NOTE = f"{WAIT_PREFIX}run "


def _note_waiting_children(session: Session) -> None:
    """Bring the notes of queued runs with a parent up to date: what each waits for while its
    parent is not completed, nothing once it is (or is gone). Rows are written only when their
    note changes; on PostgreSQL a row another claimer holds is left to it (SKIP LOCKED), so
    concurrent claimers never wait for each other here."""
    parent = aliased(Run)
    rows = session.execute(
        select(Run.id, Run.error, Run.parent_id, parent.status)
        .outerjoin(parent, parent.id == Run.parent_id)
        .where(Run.status == "queued", Run.parent_id.is_not(None)).order_by(Run.id)
        .with_for_update(skip_locked=True, of=Run)).all()
    for run_id, error, parent_id, parent_status in rows:
        if parent_status is not None and parent_status != "completed":
            note: str | None = parent_wait_note(int(parent_id or 0), parent_status)
        elif error is not None and error.startswith(_PARENT_NOTE):
            note = None
        else:
            continue
        if error != note:
            session.execute(update(Run).where(Run.id == run_id, Run.status == "queued")
                            .values(error=note))




def set_job(db: Database, run_id: int, *, job_id: str, log_path: str | None,
            job_state: str = "PENDING") -> None:
    """A claimed run was submitted as the scheduler's job ``job_id``."""
    with db.session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            job_id=job_id, job_state=job_state, log_path=log_path, heartbeat_at=time.time()))


def set_job_state(db: Database, run_id: int, job_state: str) -> None:
    with db.session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id, Run.status.in_(ACTIVE))
                        .values(job_state=job_state))


def job_runs(db: Database) -> list[RunRecord]:
    """Active runs held by a scheduler's job (any host: the job moves the run to its node)."""
    with db.session_scope(read_only=True) as session:
        q = select(Run).where(Run.status.in_(ACTIVE), Run.job_id.is_not(None))
        return [run_record(r) for r in session.execute(q.order_by(Run.id)).scalars()]


def submit_failed(db: Database, run_id: int, reason: str) -> bool:
    """A claimed run whose submission the scheduler refused goes back to the queue at its
    place, ``error`` saying why (``mfm runs`` shows it): nothing queued is lost."""
    with db.session_scope() as session:
        return bool(_rowcount(session.execute(update(Run).where(
            Run.id == run_id, Run.status == "starting").values(
                status="queued", host=None, slot=None, job_id=None, job_state=None,
                error=f"{WAIT_PREFIX}a Slurm submission that works: {reason}"))))


def stop_for_restart(db: Database, run_id: int, note: str) -> bool:
    """The run stopped because its job is preempted or at its time limit: running →
    starting, to resume from its last checkpoint when the job starts again (not cancelled)."""
    with db.session_scope() as session:
        return bool(_rowcount(session.execute(update(Run).where(
            Run.id == run_id, Run.status.in_(("running", "starting"))).values(
                status="starting", resume_requested=1, pid=None, proc_start=None,
                error=f"{RESTART_NOTE}: {note}", heartbeat_at=time.time()))))


def job_restarted(db: Database, run_id: int, job_id: str) -> str:
    """The job ``job_id`` starts (again): what its run process should do. "start" (the run is
    waiting for it; a run this job held before, which could not record its stop, is set to
    resume), "cancel" (a cancel was requested meanwhile: recorded cancelled), or "gone" (the
    run is finished or held by another job: do nothing)."""
    now = time.time()
    with db.session_scope() as session:
        run = session.get(Run, run_id, with_for_update=True)
        if run is None or run.status not in ACTIVE or (run.job_id and run.job_id != job_id):
            return "gone"
        if run.cancel_requested_at is not None:
            run.status, run.finished_at = "cancelled", now
            return "cancel"
        if run.status == "running":  # killed without recording it (scontrol requeue, kill)
            run.status = "starting"
            run.resume_requested = 1
        if run.error and run.error.startswith(RESTART_NOTE):
            run.error = None
        run.job_state = "RUNNING"
        run.heartbeat_at = now
        return "start"


def end_job_run(db: Database, run_id: int, to: str, error: str, job_state: str) -> bool:
    """A run whose job the scheduler ended without the run recording its end → ``to``."""
    with db.session_scope() as session:
        return bool(_rowcount(session.execute(update(Run).where(
            Run.id == run_id, Run.status.in_(ACTIVE)).values(
                status=to, finished_at=time.time(), error=error,
                job_state=job_state))))


def set_process(db: Database, run_id: int, *, pid: int, proc_start: str | None,
                log_path: str) -> None:
    with db.session_scope() as session:
        session.execute(update(Run).where(Run.id == run_id).values(
            pid=pid, proc_start=proc_start, log_path=log_path, heartbeat_at=time.time()))


def transition(db: Database, run_id: int, to: str, *, allowed_from: tuple[str, ...] = ACTIVE,
               error: str | None = None) -> bool:
    """Move a run to ``to`` if it is in ``allowed_from``; False if it was not (someone else
    already decided its state)."""
    values: dict[str, Any] = {"status": to}
    if to in ("completed", "failed", "cancelled", "lost"):
        values["finished_at"] = time.time()
    if error is not None:
        values["error"] = error
    with db.session_scope() as session:
        return bool(_rowcount(session.execute(update(Run).where(
            Run.id == run_id, Run.status.in_(allowed_from)).values(**values))))


def queue_positions(db: Database) -> dict[int, int]:
    """Queued run id -> its position (1 = next to start)."""
    with db.session_scope(read_only=True) as session:
        ids = session.execute(select(Run.id).where(Run.status == "queued")
                              .order_by(Run.queued_at, Run.id)).scalars().all()
    return {rid: i + 1 for i, rid in enumerate(ids)}


def active_runs(db: Database, *, host: str | None = None) -> list[RunRecord]:
    with db.session_scope(read_only=True) as session:
        q = select(Run).where(Run.status.in_(ACTIVE))
        if host is not None:
            q = q.where(Run.host == host)
        return [run_record(r) for r in session.execute(q.order_by(Run.id)).scalars()]


def stale_runs_elsewhere(db: Database, *, host: str, before: float) -> list[RunRecord]:
    """Active runs of other hosts whose own heartbeat is older than ``before`` and whose
    host's supervisor is silent too (no row, stopped, or its heartbeat older than
    ``before``): nobody reports for them any more. Runs held by a scheduler's job are left
    to the worker that asks the scheduler (a requeued job is silent while it waits)."""
    with db.session_scope(read_only=True) as session:
        live_hosts = select(Worker.host).where(Worker.stopped_at.is_(None),
                                               Worker.heartbeat_at >= before)
        q = select(Run).where(Run.status.in_(ACTIVE), Run.host.is_not(None), Run.host != host,
                              Run.host.not_in(live_hosts), Run.job_id.is_(None),
                              func.coalesce(Run.heartbeat_at, Run.started_at,
                                            Run.created_at) < before)
        return [run_record(r) for r in session.execute(q.order_by(Run.id)).scalars()]


def worker_last_seen(db: Database, host: str) -> float | None:
    """The last heartbeat of ``host``'s supervisor, or None if none ever served here."""
    with db.session_scope(read_only=True) as session:
        return session.execute(select(Worker.heartbeat_at)
                               .where(Worker.host == host)).scalar_one_or_none()


def mark_lost_if_stale(db: Database, run_id: int, *, host: str, before: float,
                       error: str) -> bool:
    """``run_id`` (of ``host``) → lost, only if it is still active there and its heartbeat is
    still older than ``before`` (a run that just reported again is left alone)."""
    with db.session_scope() as session:
        return bool(_rowcount(session.execute(update(Run).where(
            Run.id == run_id, Run.status.in_(ACTIVE), Run.host == host,
            func.coalesce(Run.heartbeat_at, Run.started_at, Run.created_at) < before).values(
                status="lost", finished_at=time.time(), error=error))))


def cancel_requested(db: Database, *, host: str) -> list[RunRecord]:
    with db.session_scope(read_only=True) as session:
        q = select(Run).where(Run.status.in_(ACTIVE), Run.host == host,
                              Run.cancel_requested_at.is_not(None))
        return [run_record(r) for r in session.execute(q).scalars()]


def request_cancel(db: Database, run_id: int) -> str:
    """Cancel: a queued run is cancelled at once ("cancelled"); a starting or running one gets
    a request its supervisor acts on ("requested"). Finished runs are refused."""
    now = time.time()
    with db.session_scope() as session:
        run = session.get(Run, run_id, with_for_update=True)
        if run is None:
            raise NoSuchRun(run_id)
        if run.status in WAITING:
            session.execute(update(Run).where(Run.id == run_id).values(
                status="cancelled", finished_at=now, cancel_requested_at=now))
            return "cancelled"
        if run.status in ACTIVE:
            if run.cancel_requested_at is None:
                run.cancel_requested_at = now
            return "requested"
        raise RunStateError(run_id, run.status,
                            f"run {run_id} is already {run.status}; nothing to cancel")


_KEEP = object()


def request_resume(db: Database, run_id: int, *, to: str = "queued",
                   want_host: Any = _KEEP) -> RunRecord:
    """Queue a cancelled, failed or lost run again, to continue from its last checkpoint.
    ``to="created"``: take it for this process instead (a foreground run that no supervisor
    may claim). ``want_host``: pin it to that host, or None for any host (default: the pin it
    had)."""
    if to not in WAITING:
        raise ValueError(f"resume to queued or created, not {to!r}")
    with db.session_scope() as session:
        run = session.get(Run, run_id, with_for_update=True)
        if run is None:
            raise NoSuchRun(run_id)
        if run.status not in RESUMABLE:
            hint = {"completed": "it finished; nothing to resume",
                    "queued": "it is already queued"}.get(run.status, "it is still active")
            raise RunStateError(run_id, run.status,
                                f"run {run_id} is {run.status}: {hint} (resumable: "
                                f"{' | '.join(RESUMABLE)})")
        run.status = to
        run.queued_at = time.time()
        run.resume_requested = 1
        run.attempt = (run.attempt or 0) + 1
        run.finished_at = None
        run.cancel_requested_at = None
        run.error = None
        run.pid = None
        run.proc_start = None
        if want_host is not _KEEP:
            run.want_host = want_host or None
        session.flush()
        return run_record(run)


# -- workers --------------------------------------------------------------------------------

def upsert_worker(db: Database, *, host: str, pid: int, proc_start: str | None,
                  slots: list[dict[str, Any]]) -> None:
    now = time.time()
    with db.session_scope() as session:
        w = session.get(Worker, host, with_for_update=True)
        if w is None:
            session.add(Worker(host=host, pid=pid, proc_start=proc_start, started_at=now,
                               heartbeat_at=now, slots_json=json.dumps(slots)))
        else:
            w.pid, w.proc_start, w.started_at, w.heartbeat_at = pid, proc_start, now, now
            w.slots_json, w.stopped_at = json.dumps(slots), None


def worker_heartbeat(db: Database, *, host: str, slots: list[dict[str, Any]]) -> None:
    with db.session_scope() as session:
        session.execute(update(Worker).where(Worker.host == host).values(
            heartbeat_at=time.time(), slots_json=json.dumps(slots)))


def stop_worker(db: Database, *, host: str, pid: int) -> None:
    with db.session_scope() as session:
        session.execute(update(Worker).where(Worker.host == host, Worker.pid == pid).values(
            stopped_at=time.time()))


def list_workers(db: Database) -> list[WorkerRecord]:
    with db.session_scope(read_only=True) as session:
        return [WorkerRecord(w.host, w.pid, w.proc_start, w.started_at, w.heartbeat_at,
                             json.loads(w.slots_json), w.stopped_at)
                for w in session.execute(select(Worker).order_by(Worker.host)).scalars()]


def count_by_status(db: Database) -> dict[str, int]:
    with db.session_scope(read_only=True) as session:
        return dict(session.execute(select(Run.status, func.count()).group_by(Run.status)).all())

