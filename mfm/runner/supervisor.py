"""The supervisor (``mfm worker``): one per database per host. It claims queued runs for free
slots, launches each as its own process in a new session, reaps them, acts on cancel requests,
and owns the final truth of a run whose process vanished (pid + start time + heartbeat).

It keeps no state that matters across restarts: on start it re-adopts live runs of this host
from the records and reconciles the rest, so killing or restarting it never loses a run.

Several hosts may serve one database (PostgreSQL): each supervisor judges only its own host's
processes (pid and start time), and records its own heartbeat in the workers table. A run of
another host is marked lost by any supervisor only when nobody reports for it any more: that
host's supervisor and the run itself are both silent for longer than the heartbeat timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mfm.runner.gpus import GpuInfo
from mfm.runner.procs import is_alive, process_start_time, signal_group
from mfm.runner.threads import child_env
from mfm.store import Database, StoreError, queue

__all__ = ["Slot", "SlotError", "plan_slots", "Supervisor", "CHILD_MODULE", "can_read"]

#: the module a run process runs (``python -m``)
CHILD_MODULE = "mfm.runner.child"

#: the longest pause between two of the supervisor's own heartbeats
BEAT_EVERY = 5.0


def can_read(path: str) -> bool:
    """Can this host read ``path`` (a resume's checkpoint on a shared or local disk)?"""
    return os.path.isfile(path) and os.access(path, os.R_OK)


class SlotError(ValueError):
    """Bad slot options (one line, names the option)."""


@dataclass(frozen=True)
class Slot:
    name: str
    gpu: int | None  # PCI-bus-order index; None = a CPU slot

    @property
    def visible_devices(self) -> str:
        return "" if self.gpu is None else str(self.gpu)


def plan_slots(found: list[GpuInfo], *, gpus: list[int] | None, per_gpu: int,
               cpu_slots: int) -> list[Slot]:
    """Slots from the discovered GPUs (all, or those named by ``--gpus``), ``per_gpu`` runs
    on each; no GPU → ``cpu_slots`` CPU slots."""
    if per_gpu < 1:
        raise SlotError(f"--per-gpu: must be >= 1 (got {per_gpu})")
    if cpu_slots < 1:
        raise SlotError(f"--cpu-slots: must be >= 1 (got {cpu_slots})")
    have = [g.index for g in found]
    if gpus is not None:
        missing = [g for g in gpus if g not in have]
        if missing:
            where = ", ".join(map(str, have)) if have else "none"
            raise SlotError(f"--gpus: GPU {missing[0]} does not exist on this host "
                            f"(GPUs here: {where})")
        chosen = gpus
    else:
        chosen = have
    if not chosen:
        return [Slot(f"cpu{i}", None) for i in range(cpu_slots)]
    return [Slot(f"gpu{g}" if per_gpu == 1 else f"gpu{g}.{k}", g)
            for g in chosen for k in range(per_gpu)]


class Supervisor:
    def __init__(self, db: Database, *, db_target: str, host: str, slots: list[Slot],
                 runs_root: Path, heartbeat_timeout: float = 60.0, grace: float = 30.0,
                 idle_exit: float | None = None, poll: float = 1.0,
                 python: str = sys.executable, log: Callable[[str], None] = print,
                 clock: Callable[[], float] = time.time, child_module: str = CHILD_MODULE):
        self.db, self.db_target, self.host = db, db_target, host
        self.child_module = child_module
        # often enough that a supervisor on another host never takes this one for silent
        self.beat_every = min(BEAT_EVERY, heartbeat_timeout / 3)
        self.slots = slots
        self.runs_root = runs_root
        self.heartbeat_timeout, self.grace = heartbeat_timeout, grace
        self.idle_exit, self.poll = idle_exit, poll
        self.python, self.log, self.clock = python, log, clock
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.exit_codes: dict[int, int] = {}
        self.busy: dict[str, int] = {}  # slot name -> run id
        self.signalled: set[int] = set()
        self.idle_since = clock()
        self.stop = threading.Event()
        self.pid = os.getpid()

    # -- lifecycle ------------------------------------------------------------------------------
    def slot_info(self) -> list[dict[str, Any]]:
        return [{**asdict(s), "run": self.busy.get(s.name)} for s in self.slots]

    def start(self) -> None:
        queue.upsert_worker(self.db, host=self.host, pid=self.pid,
                            proc_start=process_start_time(self.pid), slots=self.slot_info())
        self.reconcile()

    def serve(self) -> None:
        """Tick until stopped (SIGTERM/SIGINT/SIGHUP set ``stop``) or idle for idle_exit."""
        self.start()
        last_beat = 0.0
        failing: str | None = None  # the records' fault while they cannot be reached
        pause = self.poll
        try:
            while not self.stop.is_set():
                try:
                    self.tick()
                    if self.clock() - last_beat >= self.beat_every:
                        queue.worker_heartbeat(self.db, host=self.host, slots=self.slot_info())
                        last_beat = self.clock()
                except StoreError as e:  # the server restarts, the network drops: wait
                    if failing != str(e):
                        self.log(f"the records cannot be reached ({e}); retrying")
                    failing, pause = str(e), min(max(pause * 2, self.poll), 30.0)
                    self.stop.wait(pause)
                    continue
                if failing is not None:
                    self.log("the records can be reached again")
                    failing, pause = None, self.poll
                if self.idle_exit is not None and self.clock() - self.idle_since > self.idle_exit:
                    self.log(f"idle for {self.idle_exit:g} s: exiting")
                    break
                self.stop.wait(self.poll)
        finally:
            try:
                queue.stop_worker(self.db, host=self.host, pid=self.pid)
            except StoreError as e:
                self.log(f"could not record this supervisor's stop ({e})")
            # Runs are never killed with the supervisor: they live in their own sessions and
            # the next supervisor re-adopts them.

    def tick(self) -> None:
        self.reap()
        self.handle_cancels()
        self.watch()
        self.watch_elsewhere()
        self.launch_free()
        if self.busy or queue.queue_positions(self.db):
            self.idle_since = self.clock()

    # -- state of this host's runs -----------------------------------------------------------
    def reconcile(self) -> None:
        """On start: adopt live runs of this host, requeue claims that never launched, and
        leave the dead to ``watch`` (lost once their heartbeat is stale)."""
        for rec in queue.active_runs(self.db, host=self.host):
            if rec.job_id:  # held by a Slurm job: its worker asks Slurm
                continue
            if rec.pid and is_alive(rec.pid, rec.proc_start):
                self._occupy(rec.slot, rec.id)
                self.log(f"run {rec.id}: re-adopted (pid {rec.pid}, slot {rec.slot})")
            elif rec.status == "starting" and not rec.pid:
                if queue.transition(self.db, rec.id, "queued", allowed_from=("starting",)):
                    self.log(f"run {rec.id}: claimed but never launched; queued again")

    def _occupy(self, slot: str | None, run_id: int) -> None:
        if slot is None:  # a foreground (--headless) run: watched, but holds no slot
            return
        names = {s.name for s in self.slots}
        if slot in names and slot not in self.busy:
            self.busy[slot] = run_id
        else:  # adopted from a supervisor with other slots: count it on a free slot if any
            free = [s.name for s in self.slots if s.name not in self.busy]
            if free:
                self.busy[free[0]] = run_id

    def _release(self, run_id: int) -> None:
        for name, rid in list(self.busy.items()):
            if rid == run_id:
                del self.busy[name]

    def reap(self) -> None:
        for run_id, proc in list(self.children.items()):
            code = proc.poll()
            if code is not None:
                del self.children[run_id]
                self.exit_codes[run_id] = code
                self.log(f"run {run_id}: process exited with code {code}")

    def watch(self) -> None:
        """Active runs of this host whose process is gone: lost once the heartbeat is older
        than the timeout (the run process writes its own final state when it can)."""
        now = self.clock()
        for rec in queue.active_runs(self.db, host=self.host):
            if rec.id in self.children or rec.job_id:  # a Slurm job's: its worker judges it
                continue
            alive = bool(rec.pid) and is_alive(rec.pid, rec.proc_start)
            if alive:
                if rec.id not in self.busy.values():
                    self._occupy(rec.slot, rec.id)
                continue
            if rec.status == "starting" and not rec.pid:
                continue  # claimed by this supervisor a moment ago, launching
            beat = rec.heartbeat_at or rec.started_at or rec.created_at
            if now - beat > self.heartbeat_timeout:
                code = self.exit_codes.pop(rec.id, None)
                how = "" if code is None else (
                    f" (exit code {code})" if code >= 0 else f" (killed by signal {-code})")
                note = (f"lost: process {rec.pid} is gone{how} and its last heartbeat was "
                        f"{now - beat:.0f} s ago; resume with: mfm resume {rec.id}")
                if queue.transition(self.db, rec.id, "lost", error=note):
                    self.log(f"run {rec.id}: {note}")
                self._release(rec.id)
        for run_id in [rid for rid in self.busy.values()]:
            rec_status = self._status(run_id)
            if rec_status not in queue.ACTIVE:
                self._release(run_id)
                self.signalled.discard(run_id)

    def watch_elsewhere(self) -> None:
        """Runs of other hosts that nobody reports for: their host's supervisor and the run
        itself both silent for longer than the heartbeat timeout. Marked lost, saying when
        they stopped reporting; a run that reports again meanwhile is left alone."""
        before = self.clock() - self.heartbeat_timeout
        for rec in queue.stale_runs_elsewhere(self.db, host=self.host, before=before):
            assert rec.host is not None
            beat = rec.heartbeat_at or rec.started_at or rec.created_at
            seen = queue.worker_last_seen(self.db, rec.host)
            last = max(beat, seen or 0.0)
            who = (f"host {rec.host}'s supervisor and the run" if seen is not None
                   else f"the run on host {rec.host} (no supervisor there)")
            note = (f"lost: {who} stopped reporting at "
                    f"{time.strftime('%H:%M:%S', time.localtime(last))} (judged by "
                    f"{self.host}); resume with: mfm resume {rec.id}")
            if queue.mark_lost_if_stale(self.db, rec.id, host=rec.host, before=before,
                                        error=note):
                self.log(f"run {rec.id}: {note}")

    def _status(self, run_id: int) -> str | None:
        from mfm.store import repo

        rec = repo.get_run(self.db, run_id)
        return None if rec is None else rec.status

    def handle_cancels(self) -> None:
        now = self.clock()
        for rec in queue.cancel_requested(self.db, host=self.host):
            if rec.job_id:  # a Slurm job's: its worker scancels it
                continue
            alive = bool(rec.pid) and is_alive(rec.pid, rec.proc_start)
            if not alive:
                if rec.status == "starting" and rec.id not in self.children:
                    queue.transition(self.db, rec.id, "cancelled")
                    self._release(rec.id)
                continue
            if rec.pid is None:  # alive implies a pid: this only tells the type checker
                continue
            if rec.id not in self.signalled:
                signal_group(rec.pid, signal.SIGTERM)
                self.signalled.add(rec.id)
                self.log(f"run {rec.id}: SIGTERM sent to process group {rec.pid}")
            elif now - (rec.cancel_requested_at or now) > self.grace:
                signal_group(rec.pid, signal.SIGKILL)
                note = (f"cancelled: did not stop within {self.grace:g} s of SIGTERM; killed "
                        f"with SIGKILL")
                queue.transition(self.db, rec.id, "cancelled", error=note)
                self.log(f"run {rec.id}: {note}")

    # -- launching ------------------------------------------------------------------------------
    def launch_free(self) -> None:
        for slot in self.slots:
            if slot.name in self.busy:
                continue
            rec = queue.claim_next(self.db, host=self.host, slot=slot.name, can_read=can_read)
            if rec is None:
                continue  # nothing queued for this slot (runs may ask for another one)
            # a resume continues in the folder of its checkpoint (a shared runs folder)
            need = queue.needs_checkpoint(rec.resume_requested, rec.checkpoint_dir, rec.epoch)
            run_dir = Path(need).parent if need is not None else None
            self.launch(rec.id, slot, attempt=rec.attempt, resume=rec.resume_requested,
                        run_dir=run_dir, config=rec.config)

    def launch(self, run_id: int, slot: Slot, *, attempt: int, resume: bool,
               run_dir: Path | None = None, config: dict[str, Any] | None = None) -> None:
        run_dir = run_dir or self.runs_root / str(run_id)
        log_path = run_dir / "run.log"
        # The thread plan (train.threads) must be in the environment before the run imports
        # torch (OpenMP reads it once): this host's cores are shared by all of our slots.
        threads_env, plan = child_env(config or {}, runs=len(self.slots))
        # the database's URL travels in the environment: a password must not show in `ps`
        env = dict(threads_env, CUDA_DEVICE_ORDER="PCI_BUS_ID", MFM_DB=self.db_target,
                   CUDA_VISIBLE_DEVICES=slot.visible_devices, PYTHONUNBUFFERED="1")
        cmd = [self.python, "-m", self.child_module, "--checkpoint-dir", str(run_dir),
               str(run_id)]
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as logf:
                logf.write(f"== run {run_id} attempt {attempt}{' (resume)' if resume else ''} "
                           f"on {self.host} slot {slot.name} at "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}, {plan.threads} thread(s) "
                           f"({plan.policy}; {plan.cores} cores / {plan.runs} slots) "
                           f"==\n".encode())
                logf.flush()
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        env=env, close_fds=True)
        except OSError as e:
            queue.transition(self.db, run_id, "failed", allowed_from=("starting",),
                             error=f"could not start the run process: {e}")
            return
        self.children[run_id] = proc
        self.busy[slot.name] = run_id
        queue.set_process(self.db, run_id, pid=proc.pid, proc_start=process_start_time(proc.pid),
                          log_path=str(log_path))
        self.log(f"run {run_id}: started pid {proc.pid} on slot {slot.name}")
