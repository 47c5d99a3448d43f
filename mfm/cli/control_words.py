"""Run control's results and errors in the CLI's words (``mfm.runner.control`` decides;
this module only words): the field at fault becomes the option or argument a user typed."""

from __future__ import annotations

from collections.abc import Mapping

from mfm.cli.context import App
from mfm.cli.errors import MESSAGE_LIMIT, UserError
from mfm.runner.control import Cancelled, ControlError, RunControl, SupervisorNote
from mfm.text import one_line

__all__ = ["refused", "cancelled_text", "supervisor_text", "open_control", "FIELDS"]

#: a control error's field -> what a command line calls it
FIELDS: Mapping[str, str] = {"run": "ID", "sweep": "ID", "slot": "--slot", "host": "--host",
                             "config": "--config-name", "dataset": "--dataset"}


def refused(e: ControlError, fields: Mapping[str, str] = FIELDS) -> UserError:
    """The UserError (one line, exit 2) for a refused action."""
    if e.field is None:
        return UserError(one_line(e.message, limit=MESSAGE_LIMIT))
    return UserError(one_line(f"{fields.get(e.field, e.field)}: {e.message}",
                              limit=MESSAGE_LIMIT))


def cancelled_text(c: Cancelled) -> str:
    """One line per cancelled run."""
    return {
        "cancelled": f"run {c.run_id}: cancelled (it was queued)",
        "signalled": f"run {c.run_id}: SIGTERM sent; it stops after its current step",
        "requested": f"run {c.run_id}: cancel requested; the supervisor on {c.host} acts on it",
        "job-requested": f"run {c.run_id}: cancel requested; the Slurm worker cancels job "
                         f"{c.job_id}",
        "job-retry": f"run {c.run_id}: cancel requested; scancel {c.job_id} failed ({c.why}): "
                     f"the Slurm worker tries again",
        "job-cancelled-unstarted": f"run {c.run_id}: cancelled (Slurm job {c.job_id} had not "
                                   f"started it)",
        "job-cancelled": f"run {c.run_id}: Slurm job {c.job_id} cancelled (scancel); the run "
                         f"stops after its current step and keeps its last epoch's checkpoint",
    }[c.outcome]


def supervisor_text(note: SupervisorNote, shown_db: str) -> str:
    """What serves a queued run, as a clause."""
    return {
        "started": f"started a supervisor (pid {note.pid}; it exits after 10 idle minutes)",
        "serving": f"supervisor pid {note.pid} serves {shown_db}",
        "none": f"no supervisor serves {shown_db} (start one: mfm worker --detach)",
        "elsewhere": f"the supervisor of host {note.host} starts it",
        "slurm": "a Slurm worker takes it",
        "slurm-unserved": "no Slurm worker serves this database yet; start one on the login "
                          "node: mfm worker --executor slurm --detach",
    }[note.state]


def open_control(app: App) -> RunControl:
    """The run control of the command's database (opened once per command)."""
    return RunControl(app.open_db(), db_target=app.db_target, runs_root=app.runs_root())
