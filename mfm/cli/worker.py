"""``mfm worker``: the supervisor that runs queued runs, one per database per host."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.runner.procs import host_name, process_start_time
from mfm.store import queue

__all__ = ["worker"]


def _parse_gpus(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        gpus = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"--gpus: expected comma-separated GPU indices like 0,1 "
                        f"(got {text!r})") from None
    if not gpus or any(g < 0 for g in gpus):
        raise UserError(f"--gpus: expected comma-separated GPU indices like 0,1 (got {text!r})")
    return gpus


def _holder_text(holder: dict[str, Any]) -> str:
    since = holder.get("locked_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {when}"


@click.group(invoke_without_command=True)
@click.option("--gpus", default=None, metavar="0,1", help="GPUs to use (default: all found; "
              "found through NVML or nvidia-smi, without importing torch).")
@click.option("--per-gpu", type=int, default=1, show_default=True, help="Runs per GPU.")
@click.option("--cpu-slots", type=int, default=1, show_default=True,
              help="Concurrent runs when there is no GPU.")
@click.option("--idle-exit", type=float, default=None, metavar="SECONDS",
              help="Exit after this long with nothing queued or running.")
@click.option("--detach", is_flag=True, help="Run in the background (own session, survives "
              "logout); output to runs/worker.log.")
@click.option("--heartbeat-timeout", type=float, default=60.0, show_default=True,
              help="A run whose process is gone and whose heartbeat is older than this is "
                   "marked lost.")
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="Seconds after SIGTERM before a cancelled run is killed.")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local",
              show_default=True, help="Where runs train: local processes on this host, or "
              "Slurm jobs (submitit; run the worker on the login node).")
@click.option("--partition", default=None, help="slurm: the partition (default: Slurm's).")
@click.option("--gpus-per-run", type=int, default=0, show_default=True,
              help="slurm: GPUs per run's job (--gpus-per-node).")
@click.option("--cpus-per-run", type=int, default=None, help="slurm: CPUs per run's job.")
@click.option("--mem", default=None, metavar="SIZE", help="slurm: memory per job (16G).")
@click.option("--time", "time_limit", default="4:00:00", show_default=True,
              metavar="TIME", help="slurm: time limit per job (MIN, H:MIN:SEC, D-H:MIN); a "
              "run at its limit is checkpointed and its job requeued.")
@click.option("--max-jobs", type=int, default=4, show_default=True,
              help="slurm: runs in Slurm at once (pending or running).")
@click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
              help="slurm: another sbatch option (qos=high, account=lab; repeatable).")
@click.option("--signal-delay", type=int, default=120, show_default=True, metavar="SECONDS",
              help="slurm: Slurm signals a job this long before its time limit to checkpoint.")
@click.option("--poll", type=float, default=1.0, show_default=True, hidden=True)
@click.option("--child-module", default=None, hidden=True,
              help="The module a run process runs (tests stand in a torch-free one).")
@pass_app
def worker(app: App, gpus: str | None, per_gpu: int, cpu_slots: int, idle_exit: float | None,
           detach: bool, heartbeat_timeout: float, grace: float, executor: str,
           partition: str | None, gpus_per_run: int, cpus_per_run: int | None,
           mem: str | None, time_limit: str, max_jobs: int, slurm_args: tuple[str, ...],
           signal_delay: int, poll: float, child_module: str | None) -> None:
    """Serve the run queue of this database on this host: claim queued runs for free slots,
    launch each as its own process (CUDA_VISIBLE_DEVICES set to its slot), reap them, cancel
    on request, re-adopt live runs after a restart and mark vanished ones lost.

    Several hosts may serve one PostgreSQL database (start one supervisor on each box): a
    run pinned with `mfm run --host` waits for its host, and a run of a host whose
    supervisor and run both stopped reporting is marked lost by any other supervisor.

    \b
    Examples:
      mfm worker --detach                 # all GPUs, one run each, in the background
      mfm worker --gpus 0,1 --per-gpu 2
      mfm worker --executor slurm --partition gpu --gpus-per-run 1 --time 4:00:00 --detach
      mfm worker status
    """
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return
    from mfm.runner.gpus import discover_gpus
    from mfm.runner.launch import serving, start_detached_supervisor, supervisor_lock
    from mfm.runner.supervisor import CHILD_MODULE, SlotError, plan_slots

    if heartbeat_timeout <= 0 or grace < 0:
        raise UserError("--heartbeat-timeout: must be > 0 and --grace >= 0")
    options = None
    if executor != "slurm":
        given = [n for n, v in (("--partition", partition), ("--gpus-per-run", gpus_per_run),
                                ("--cpus-per-run", cpus_per_run), ("--mem", mem),
                                ("--slurm-arg", slurm_args)) if v]
        if given:
            raise UserError(f"{given[0]}: only with --executor slurm")
    if executor == "slurm":
        options = _slurm_options(partition, gpus_per_run, cpus_per_run, mem, time_limit,
                                 max_jobs, slurm_args, signal_delay, app.runs_root())
        slots = None
    else:
        try:
            slots = plan_slots(discover_gpus(), gpus=_parse_gpus(gpus), per_gpu=per_gpu,
                               cpu_slots=cpu_slots)
        except SlotError as e:
            raise UserError(str(e)) from None
    db = app.open_db()
    runs_root = app.runs_root()
    holder = serving(app.db_target, runs_root)
    if holder is not None:
        raise UserError(f"a supervisor already serves {db.display} on this host: "
                        f"{_holder_text(holder)} (see mfm worker status)")
    if detach:
        args = ["--per-gpu", str(per_gpu), "--cpu-slots", str(cpu_slots),
                "--heartbeat-timeout", str(heartbeat_timeout), "--grace", str(grace),
                "--poll", str(poll)]
        if gpus:
            args += ["--gpus", gpus]
        if idle_exit is not None:
            args += ["--idle-exit", str(idle_exit)]
        if child_module:
            args += ["--child-module", child_module]
        if executor == "slurm":
            args += ["--executor", "slurm", "--gpus-per-run", str(gpus_per_run), "--time",
                     time_limit, "--max-jobs", str(max_jobs), "--signal-delay",
                     str(signal_delay)]
            args += ["--partition", partition] if partition else []
            args += ["--cpus-per-run", str(cpus_per_run)] if cpus_per_run else []
            args += ["--mem", mem] if mem else []
            for a in slurm_args:
                args += ["--slurm-arg", a]
        pid = start_detached_supervisor(app.db_target, runs_root, args)
        click.echo(f"supervisor started in the background: pid {pid}, log "
                   f"{runs_root / 'worker.log'}")
        return
    host = host_name()
    if options is not None:
        from mfm.runner.slurm import slurm_slots

        slots = slurm_slots(options.max_jobs)
    assert slots is not None
    lock = supervisor_lock(app.db_target, runs_root)
    if not lock.acquire({"pid": os.getpid(), "host": host, "executor": executor,
                         "slots": [s.name for s in slots], "db": db.display}):
        holder = lock.holder() or {}
        raise UserError(f"a supervisor already serves {db.display} on this host: "
                        f"{_holder_text(holder)} (see mfm worker status)")
    def say(msg: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {msg}", err=False)

    from mfm.runner.executors import make_supervisor

    extra = {} if options is None else {"options": options}
    sup = make_supervisor(executor, db, db_target=app.db_target, host=host, slots=slots,
                          runs_root=runs_root, heartbeat_timeout=heartbeat_timeout,
                          grace=grace, idle_exit=idle_exit, poll=poll, log=say,
                          child_module=child_module or CHILD_MODULE, **extra)

    def stop(*_: object) -> None:
        sup.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    what = "" if options is None else (
        f" (Slurm jobs: {options.max_jobs} at most, {options.time_min} min each"
        f"{', partition ' + options.partition if options.partition else ''}; job files in "
        f"{runs_root / 'slurm'})")
    say(f"supervisor pid {os.getpid()} serving {db.display} on {host}: slots "
        f"{', '.join(s.name for s in slots)}{what}")
    try:
        sup.serve()
    finally:
        lock.release()
        say("supervisor stopped (runs keep going; a new supervisor re-adopts them)")


def _slurm_options(partition: str | None, gpus_per_run: int, cpus_per_run: int | None,
                   mem: str | None, time_limit: str, max_jobs: int,
                   slurm_args: tuple[str, ...], signal_delay: int,
                   runs_root: Path) -> Any:
    """The Slurm options, checked against the cluster before anything is claimed."""
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
        raise UserError(why)
    try:
        opts = SlurmOptions(partition=partition, gpus_per_run=gpus_per_run,
                            cpus_per_run=cpus_per_run, mem=mem, time_min=parse_time(time_limit),
                            max_jobs=max_jobs, extra=parse_slurm_args(slurm_args),
                            signal_delay_s=signal_delay)
        opts.check()
        check_cluster(opts, runs_root / "slurm")
    except SlurmError as e:
        raise UserError(str(e)) from None
    return opts


@worker.command()
@click.option("--stale", type=float, default=60.0, show_default=True, metavar="SECONDS",
              help="A supervisor whose last heartbeat is older than this shows as silent.")
@pass_app
def status(app: App, stale: float) -> None:
    """Every host serving this database: its supervisor, slots busy / free and last
    heartbeat; then the runs by status.

    \b
    Example:
      mfm worker status
    """
    from mfm.runner.launch import serving

    db = app.open_db()
    here = host_name()
    holder = serving(app.db_target, app.runs_root())
    con = Console()
    if holder is None:
        con.print(f"no supervisor serves {db.display} on {here} "
                  "(mfm worker --detach starts one; mfm run starts one when needed)", markup=False)
    else:
        con.print(f"supervisor: {_holder_text(holder)}", markup=False)
    now = time.time()
    workers = queue.list_workers(db)
    active = queue.active_runs(db)
    if workers:
        table = Table(title="hosts serving this database", title_justify="left")
        for col in ("host", "pid", "state", "busy", "free", "last heartbeat", "slots"):
            table.add_column(col)
        for w in workers:
            if w.stopped_at is not None:
                state = "stopped"
            elif w.host == here:  # this host: the process itself says
                state = "serving" if process_start_time(w.pid) == w.proc_start else "gone"
            else:
                state = "serving" if now - w.heartbeat_at <= stale else "silent"
            # which run holds a slot: the runs' own records (the supervisor's slot list is
            # only as fresh as its last heartbeat)
            held = {r.slot: r.id for r in active if r.host == w.host and r.slot}
            busy = sum(1 for s in w.slots if s["name"] in held)
            slots = ", ".join(f"{s['name']}:{held.get(s['name'], 'free')}" for s in w.slots)
            beat = time.strftime("%H:%M:%S", time.localtime(w.heartbeat_at))
            table.add_row(w.host, str(w.pid), state, str(busy if state == "serving" else 0),
                          str(len(w.slots) - busy if state == "serving" else 0),
                          f"{beat} ({now - w.heartbeat_at:.0f} s ago)", slots)
        con.print(table)
    counts = queue.count_by_status(db)
    con.print("runs: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
