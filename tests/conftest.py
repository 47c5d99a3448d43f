"""Shared fixtures: a real SQLite file per test, and the environment for CLI runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "experiments.db"


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Keep MFM_* from the developer's shell out of tests; runs/ goes under tmp_path."""
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    env = dict(os.environ)
    return env


FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")
