"""Where a claimed run trains: the executors behind ``mfm worker --executor``.

One small interface, the supervisor's loop (claim for a free slot, launch, watch, cancel,
reconcile on start), with two implementations:

- ``local``: a detached process per run on this host (:class:`mfm.runner.supervisor.Supervisor`,
  slots per GPU or CPU; the run's pid and start time are its truth);
- ``slurm``: a Slurm job per run through submitit (:class:`mfm.runner.slurm.SlurmSupervisor`,
  slots slurm.0 .. slurm.N-1; Slurm's job state is the truth of what the run could not say).

Either way the run process writes its own records; the store is the only meeting point.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXECUTORS", "make_supervisor"]

EXECUTORS = ("local", "slurm")


def make_supervisor(executor: str, db: Any, **kwargs: Any) -> Any:
    """The supervisor of ``executor``; ``kwargs`` as :class:`Supervisor` takes them, plus
    ``options`` (:class:`mfm.runner.slurm.SlurmOptions`) for slurm."""
    if executor == "local":
        from mfm.runner.supervisor import Supervisor

        kwargs.pop("options", None)
        return Supervisor(db, **kwargs)
    if executor == "slurm":
        from mfm.runner.slurm import SlurmSupervisor

        return SlurmSupervisor(db, **kwargs)
    raise ValueError(f"--executor: one of {', '.join(EXECUTORS)} (got {executor!r})")
