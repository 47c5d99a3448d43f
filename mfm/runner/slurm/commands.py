"""Running Slurm's commands: :class:`SlurmError` and what Slurm says, as one line."""

from __future__ import annotations

import re
import subprocess

from mfm.text import one_line

__all__ = ["SlurmError", "run_command", "slurm_message"]


class SlurmError(ValueError):
    """A Slurm option or command that cannot work; one line naming the option."""


def run_command(cmd: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run one of Slurm's commands; SlurmError (one line) when it cannot run or hangs."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(one_line(f"{cmd[0]}: {e}")) from None


def slurm_message(text: str) -> str:
    """Slurm's error lines as one line (``sbatch: error: `` prefixes dropped)."""
    lines = [re.sub(r"^(sbatch|srun|salloc): error: ", "", ln.strip())
             for ln in text.strip().splitlines() if ln.strip()]
    return one_line("; ".join(lines) or "no message")
