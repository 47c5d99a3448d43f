"""The code's own rules, checked as part of the suite (so CI runs them with README's one test
command): ruff's lint and import order, import-linter's layer contracts
(../shared/ARCHITECTURE.md), and mypy (strict for the config, the store, the runner and the
TUI). Each runs as a real subprocess over the repository, as a developer would run it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]' installs it")
    return found


def run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_ruff_is_clean():
    res = run([tool("ruff"), "check", "."])
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_import_layers_hold():
    res = run([tool("lint-imports")])
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


@pytest.mark.slow
def test_mypy_is_clean():
    res = run([tool("mypy")], timeout=900)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]
