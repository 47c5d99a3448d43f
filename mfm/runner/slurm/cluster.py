"""The cluster before and around the jobs: what is missing to use it (:func:`missing_tools`),
whether it can run jobs with these options (:func:`check_cluster`) and ``scancel``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from mfm.runner.slurm.commands import SlurmError, run_command, slurm_message
from mfm.runner.slurm.options import SlurmOptions
from mfm.text import one_line

__all__ = ["INSTALL_SUBMITIT", "check_cluster", "missing_tools", "scancel"]

INSTALL_SUBMITIT = ("--executor slurm needs submitit: pip install 'mfm-workbench[slurm]' "
                    "(or pip install 'submitit>=1.5')")


def missing_tools() -> str | None:
    """One line saying what to install, or None when submitit and Slurm's commands are here."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        return INSTALL_SUBMITIT
    lacking = [c for c in ("sbatch", "squeue", "scontrol", "scancel") if not shutil.which(c)]
    if lacking:
        return (f"--executor slurm: Slurm's {', '.join(lacking)} not found on PATH: run the "
                f"worker on a Slurm login node (apt-get install slurm-client, or your "
                f"cluster's module load slurm)")
    return None


def _gpus_in_gres(gres: str) -> int:
    """The most GPUs one node offers, from sinfo's %G (``gpu:a100:4(S:0-1),gpu:2``)."""
    most = 0
    for part in re.split(r",(?![^()]*\))", gres):
        fields = re.sub(r"\(.*\)", "", part).split(":")
        if fields[0] == "gpu":
            try:
                most = max(most, int(fields[-1]))
            except ValueError:
                most = max(most, 1)
    return most


def _partition_gpus() -> dict[str, int]:
    """{partition: the most GPUs one of its nodes offers}, from sinfo."""
    res = run_command(["sinfo", "-h", "-o", "%P|%G"])
    if res.returncode != 0:
        raise SlurmError(f"Slurm does not answer: sinfo: {slurm_message(res.stderr)}")
    gres: dict[str, int] = {}
    for line in res.stdout.splitlines():
        if "|" in line:
            name, g = line.split("|", 1)
            name = name.strip().rstrip("*")
            gres[name] = max(gres.get(name, 0), _gpus_in_gres(g.strip()))
    return gres


def _sbatch_test_only(opts: SlurmOptions, folder: Path) -> None:
    """``sbatch --test-only`` of the script submitit would write for these options."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder.mkdir(parents=True, exist_ok=True)
    try:
        script = _make_sbatch_string(command="true", folder=str(folder),
                                     **opts.executor_parameters())
    except (ValueError, TypeError) as e:
        raise SlurmError(one_line(f"--slurm-arg: {e}")) from None
    with tempfile.NamedTemporaryFile("w", suffix=".sh", dir=folder, delete=False) as f:
        f.write(script)
    try:
        res = run_command(["sbatch", "--test-only", f.name])
    finally:
        os.unlink(f.name)
    if res.returncode != 0:
        raise SlurmError(f"sbatch refused the job: {slurm_message(res.stderr)}")


def check_cluster(opts: SlurmOptions, folder: Path) -> None:
    """Before serving: the partition exists, it has nodes with the GPUs asked for, and
    ``sbatch --test-only`` takes a job with these options. SlurmError (one line) if not."""
    gres = _partition_gpus()
    if opts.partition is not None and opts.partition not in gres:
        raise SlurmError(f"--partition: no partition {opts.partition!r} on this cluster "
                         f"(partitions: {', '.join(sorted(gres)) or 'none'})")
    if opts.gpus_per_run:
        parts = [opts.partition] if opts.partition else sorted(gres)
        most = max((gres[p] for p in parts), default=0)
        if opts.gpus_per_run > most:
            where = f"partition {opts.partition}" if opts.partition else "any partition"
            raise SlurmError(f"--gpus-per-run: {opts.gpus_per_run} GPU(s) per run, but no node "
                             f"of {where} has more than {most}")
    _sbatch_test_only(opts, folder)


def scancel(job_id: str, *, signal_name: str | None = None) -> str | None:
    """``scancel [--signal=SIG] JOB``; None when done, else Slurm's message in one line."""
    cmd = ["scancel", *([f"--signal={signal_name}"] if signal_name else []), job_id]
    try:
        res = run_command(cmd)
    except SlurmError as e:
        return str(e)
    return None if res.returncode == 0 else slurm_message(res.stderr)
