"""Real processes: every test gets its own database and runs folder, and whatever it started
(supervisors, run process groups) is killed afterwards."""

from __future__ import annotations

import pytest
from proc_helpers import Env


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.cleanup()
