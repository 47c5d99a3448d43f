"""``mfm worker``: the supervisor that runs queued runs, one per database per host."""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.runner.procs import host_name, process_start_time

__all__ = ["worker"]


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
def worker(app: App, detach: bool, **options: Any) -> None:
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
    if click.get_current_context().invoked_subcommand is not None:
        return
    from mfm.runner.launch import serving, start_detached_supervisor
    from mfm.runner.serve import ServeError, SupervisorSpec, check_spec, holder_text, serve

    options["slurm_args"] = tuple(options["slurm_args"])
    spec = SupervisorSpec(**options)
    runs_root = app.runs_root()
    try:
        checked = check_spec(spec, runs_root)
        db = app.open_db()
        holder = serving(app.db_target, runs_root)
        if holder is not None:
            raise ServeError(f"a supervisor already serves {db.display} on this host: "
                             f"{holder_text(holder)} (see mfm worker status)")
        if detach:
            pid = start_detached_supervisor(app.db_target, runs_root, spec.to_args())
            click.echo(f"supervisor started in the background: pid {pid}, log "
                       f"{runs_root / 'worker.log'}")
            return

        def say(msg: str) -> None:
            click.echo(f"{time.strftime('%H:%M:%S')} {msg}", err=False)

        serve(db, db_target=app.db_target, runs_root=runs_root, spec=spec, log=say,
              options=checked)
    except ServeError as e:
        flag = f"--{e.option.replace('_', '-')}: " if e.option else ""
        raise UserError(f"{flag}{e.message}") from None


@worker.command()
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              metavar="SECONDS", help="How long to wait for it to exit.")
@pass_app
def stop(app: App, timeout: float) -> None:
    """Stop the supervisor serving this database on this host. Its running runs keep going
    (each in its own session, recording as before); the next supervisor, started by hand or
    by the next `mfm run`, re-adopts them. Queued runs wait for it.

    \b
    Example:
      mfm worker stop
    """
    from mfm.runner.serve import stop_supervisor

    db = app.open_db()
    done = stop_supervisor(db, db_target=app.db_target, runs_root=app.runs_root(),
                           timeout=timeout)
    if done.pid is None:
        click.echo(f"no supervisor serves {db.display} on this host")
        return
    if not done.stopped:
        raise UserError(f"--timeout: supervisor pid {done.pid} did not exit within "
                        f"{timeout:g} s (SIGTERM sent; it exits after its current tick)")
    kept = (f"; runs {', '.join(map(str, done.runs))} keep running (the next supervisor "
            f"re-adopts them)" if done.runs else "")
    click.echo(f"supervisor pid {done.pid} stopped{kept}")


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
    from mfm.cli.control_words import open_control
    from mfm.runner.launch import serving
    from mfm.runner.serve import holder_text

    control = open_control(app)
    db = control.db
    here = host_name()
    holder = serving(app.db_target, app.runs_root())
    con = Console()
    if holder is None:
        con.print(f"no supervisor serves {db.display} on {here} "
                  "(mfm worker --detach starts one; mfm run starts one when needed)", markup=False)
    else:
        con.print(f"supervisor: {holder_text(holder)}", markup=False)
    now = time.time()
    workers = control.workers()
    active = control.active_runs()
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
    counts = control.run_counts()
    con.print("runs: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
