"""Serving a database's queue on this host: the runner's own entry point for its supervisor.

``mfm worker`` (the CLI) and every on-demand start (``mfm run``, ``mfm resume``, mfm-tui) go
through here: a :class:`SupervisorSpec` says how to serve (slots, timeouts, the executor and
its Slurm options), :func:`check_spec` refuses a bad one with a typed error before anything
is claimed, :func:`serve` serves in this process, and ``python -m mfm.runner.serve ARGS`` is
what a detached supervisor runs (the database's URL comes through ``MFM_DB``, never argv, so
a password never shows in ``ps``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfm.runner.procs import host_name

__all__ = ["SupervisorSpec", "ServeError", "AlreadyServed", "ON_DEMAND", "check_spec",
           "serve", "main", "holder_text", "Stopped", "stop_supervisor"]


class ServeError(ValueError):
    """A supervisor cannot serve as asked. ``option``: the spec's field at fault (a
    ``SupervisorSpec`` field name, e.g. ``gpus``, ``heartbeat_timeout``) or None;
    ``message``: what is wrong, without naming the option (front ends word it)."""

    def __init__(self, message: str, *, option: str | None = None):
        self.option, self.message = option, message
        super().__init__(message)


class AlreadyServed(ServeError):
    """Another supervisor holds this database's lock on this host (``holder``: its info)."""

    def __init__(self, shown_db: str, holder: dict[str, Any]):
        self.holder = holder
        super().__init__(f"a supervisor already serves {shown_db} on this host: "
                         f"{holder_text(holder)} (see mfm worker status)")


def holder_text(holder: dict[str, Any]) -> str:
    """``pid P on HOST since TIME`` of a supervisor lock's holder."""
    since = holder.get("locked_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {when}"


@dataclass(frozen=True)
class SupervisorSpec:
    """How a supervisor serves: the options of ``mfm worker``, as plain values."""

    gpus: str | None = None              # "0,1": the GPUs to use (None: all found)
    per_gpu: int = 1
    cpu_slots: int = 1
    idle_exit: float | None = None       # exit after this long with nothing to do
    heartbeat_timeout: float = 60.0
    grace: float = 30.0
    poll: float = 1.0
    child_module: str | None = None      # the run process's module (tests stand one in)
    executor: str = "local"              # local | slurm
    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int | None = None
    mem: str | None = None
    time_limit: str = "4:00:00"
    max_jobs: int = 4
    slurm_args: tuple[str, ...] = ()
    signal_delay: int = 120

    def to_args(self) -> list[str]:
        """The command line :func:`parse_args` reads back into an equal spec."""
        args: list[str] = []
        defaults = SupervisorSpec()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name) or value is None:
                continue
            flag = "--" + f.name.replace("_", "-")
            if isinstance(value, tuple):
                for item in value:
                    args += [flag, str(item)]
            else:
                args += [flag, str(value)]
        return args


#: what an on-demand start serves with: the defaults, exiting after 10 idle minutes
ON_DEMAND = SupervisorSpec(idle_exit=600.0)

_SLURM_ONLY = ("partition", "gpus_per_run", "cpus_per_run", "mem", "slurm_args")


def parse_gpus(text: str | None) -> list[int] | None:
    """``"0,1"`` -> [0, 1]; ServeError(option="gpus") for anything else."""
    if text is None:
        return None
    why = f"expected comma-separated GPU indices like 0,1 (got {text!r})"
    try:
        gpus = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ServeError(why, option="gpus") from None
    if not gpus or any(g < 0 for g in gpus):
        raise ServeError(why, option="gpus")
    return gpus


def check_spec(spec: SupervisorSpec, runs_root: Path) -> Any:
    """Refuse a spec that cannot serve, before anything is claimed; returns the Slurm
    options (checked against the cluster with ``sbatch --test-only``) or None for local."""
    if spec.heartbeat_timeout <= 0:
        raise ServeError("must be > 0", option="heartbeat_timeout")
    if spec.grace < 0:
        raise ServeError("must be >= 0", option="grace")
    if spec.executor not in ("local", "slurm"):
        raise ServeError(f"one of local, slurm (got {spec.executor!r})", option="executor")
    if spec.executor == "local":
        given = [name for name in _SLURM_ONLY if getattr(spec, name)]
        if given:
            raise ServeError("only with --executor slurm", option=given[0])
        _slots(spec, None)  # GPUs that do not exist are refused before anything else
        return None
    return _slurm_options(spec, runs_root)


def _slurm_options(spec: SupervisorSpec, runs_root: Path) -> Any:
    from mfm.runner.slurm import (
        SlurmError,
        SlurmOptions,
        check_cluster,
        missing_tools,
        parse_slurm_args,
        parse_time,
    )

    why = missing_tools()
    if why is not None:
        raise ServeError(why)
    try:
        opts = SlurmOptions(partition=spec.partition, gpus_per_run=spec.gpus_per_run,
                            cpus_per_run=spec.cpus_per_run, mem=spec.mem,
                            time_min=parse_time(spec.time_limit), max_jobs=spec.max_jobs,
                            extra=parse_slurm_args(spec.slurm_args),
                            signal_delay_s=spec.signal_delay)
        opts.check()
        check_cluster(opts, runs_root / "slurm")
    except SlurmError as e:
        raise ServeError(str(e)) from None
    return opts


def _slots(spec: SupervisorSpec, options: Any) -> list[Any]:
    if options is not None:
        from mfm.runner.slurm import slurm_slots

        return list(slurm_slots(options.max_jobs))
    from mfm.runner.gpus import discover_gpus
    from mfm.runner.supervisor import SlotError, plan_slots

    try:
        return plan_slots(discover_gpus(), gpus=parse_gpus(spec.gpus), per_gpu=spec.per_gpu,
                          cpu_slots=spec.cpu_slots)
    except SlotError as e:
        raise ServeError(str(e)) from None


def serve(db: Any, *, db_target: str, runs_root: Path, spec: SupervisorSpec,
          log: Callable[[str], None], options: Any = None) -> None:
    """Serve ``db``'s queue on this host until a signal (TERM, INT, HUP) or ``idle_exit``.
    ``options``: what :func:`check_spec` returned (checked again here when None and the
    executor is slurm). Raises :class:`AlreadyServed` when another supervisor holds the lock,
    :class:`ServeError` for slots that cannot be planned."""
    from mfm.runner.executors import make_supervisor
    from mfm.runner.launch import supervisor_lock
    from mfm.runner.supervisor import CHILD_MODULE

    if options is None:
        options = check_spec(spec, runs_root)
    slots = _slots(spec, options)
    host = host_name()
    lock = supervisor_lock(db_target, runs_root)
    if not lock.acquire({"pid": os.getpid(), "host": host, "executor": spec.executor,
                         "slots": [s.name for s in slots], "db": db.display}):
        raise AlreadyServed(db.display, lock.holder() or {})
    try:
        extra = {} if options is None else {"options": options}
        sup = make_supervisor(spec.executor, db, db_target=db_target, host=host, slots=slots,
                              runs_root=runs_root, heartbeat_timeout=spec.heartbeat_timeout,
                              grace=spec.grace, idle_exit=spec.idle_exit, poll=spec.poll,
                              log=log, child_module=spec.child_module or CHILD_MODULE, **extra)

        def stop(*_: object) -> None:
            sup.stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        what = "" if options is None else (
            f" (Slurm jobs: {options.max_jobs} at most, {options.time_min} min each"
            f"{', partition ' + options.partition if options.partition else ''}; job files "
            f"in {runs_root / 'slurm'})")
        log(f"supervisor pid {os.getpid()} serving {db.display} on {host}: slots "
            f"{', '.join(s.name for s in slots)}{what}")
        sup.serve()
    finally:
        lock.release()
        log("supervisor stopped (runs keep going; a new supervisor re-adopts them)")


@dataclass(frozen=True)
class Stopped:
    """What :func:`stop_supervisor` did: ``pid`` of the supervisor (None: none served this
    database here); ``stopped``: it exited within the time given; ``runs``: run ids still
    running here, left running (a new supervisor re-adopts them)."""

    pid: int | None
    stopped: bool
    runs: tuple[int, ...] = ()


def stop_supervisor(db: Any, *, db_target: str, runs_root: Path,
                    timeout: float = 30.0) -> Stopped:
    """Stop the supervisor serving ``db`` on this host (SIGTERM; it finishes its tick,
    records its stop and exits) and wait for its lock to be free. Its runs are not touched:
    they live in their own sessions, keep training and recording, and the next supervisor
    re-adopts them."""
    from mfm.runner.launch import serving
    from mfm.runner.procs import is_alive
    from mfm.store import queue

    holder = serving(db_target, runs_root)
    if holder is None:
        return Stopped(None, False)
    pid = int(holder.get("pid") or 0)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while serving(db_target, runs_root) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = serving(db_target, runs_root) is None
    here = host_name()
    running = tuple(r.id for r in queue.active_runs(db, host=here)
                    if r.pid and is_alive(r.pid, r.proc_start))
    return Stopped(pid, stopped, running)


def parse_args(argv: Sequence[str]) -> SupervisorSpec:
    """The inverse of :meth:`SupervisorSpec.to_args`."""
    parser = argparse.ArgumentParser(prog="python -m mfm.runner.serve")
    defaults = SupervisorSpec()
    for f in dataclasses.fields(SupervisorSpec):
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, tuple):
            parser.add_argument(flag, dest=f.name, action="append", default=[])
        elif isinstance(default, bool) or default is None or isinstance(default, str):
            kind: Any = float if f.name == "idle_exit" else (
                int if f.name == "cpus_per_run" else str)
            parser.add_argument(flag, dest=f.name, type=kind, default=default)
        else:
            parser.add_argument(flag, dest=f.name, type=type(default), default=default)
    ns = vars(parser.parse_args(list(argv)))
    ns["slurm_args"] = tuple(ns["slurm_args"])
    return SupervisorSpec(**ns)


def main(argv: Sequence[str] | None = None) -> int:
    """A detached supervisor: ``MFM_DB`` names the records, ``MFM_RUNS_DIR`` the runs
    folder; log lines go to stdout (``runs/worker.log``)."""
    from mfm.store import Database, StoreError, resolve_db_target
    from mfm.store.paths import runs_root as default_runs_root

    spec = parse_args(sys.argv[1:] if argv is None else argv)

    def say(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    try:
        target = resolve_db_target(None, os.environ)
        root = default_runs_root(target, os.environ)
        db = Database(target)
    except StoreError as e:
        say(f"error: {'--db: ' if e.field == 'db' else ''}{e}")
        return 2
    try:
        serve(db, db_target=target, runs_root=root, spec=spec, log=say)
    except ServeError as e:
        flag = f"--{e.option.replace('_', '-')}: " if e.option else ""
        say(f"error: {flag}{e.message}")
        return 2
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
