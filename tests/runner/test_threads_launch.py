"""The supervisor starts each run process with its thread plan in the environment, before the
run imports torch: a real process, through the supervisor's own launch, reads it back."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mfm.runner.supervisor import Slot, Supervisor
from mfm.store import Database, queue
from mfm.threads import available_cores

# stands in for mfm.runner.child: reports what torch got from its environment, then exits
PROBE = '''
import json, os, sys
import torch
out = {"threads": torch.get_num_threads(), "env": {k: os.environ.get(k) for k in (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "MFM_THREADS", "MFM_THREADS_FROM")}}
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump(out, f)
'''


def _launch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: dict, slots: int) -> dict:
    (tmp_path / "threads_probe.py").write_text(PROBE)
    out = tmp_path / "probe.json"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    monkeypatch.setenv("PROBE_OUT", str(out))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "MFM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    with Database(str(tmp_path / "t.db")) as db:
        run_id = queue.enqueue_run(db, config=config, epochs_total=1)
        s = Supervisor(db, db_target=str(tmp_path / "t.db"), host="h",
                       slots=[Slot(f"cpu{i}", None) for i in range(slots)],
                       runs_root=tmp_path / "runs", log=lambda _: None,
                       child_module="threads_probe")
        s.launch_free()
        proc = s.children[run_id]
        assert proc.wait(timeout=120) == 0, (tmp_path / "runs" / str(run_id) / "run.log"
                                             ).read_text()
    got = json.loads(out.read_text())
    got["log"] = (tmp_path / "runs" / str(run_id) / "run.log").read_text()
    return dict(got)


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_auto_divides_this_hosts_cores_among_the_supervisors_slots(tmp_path, monkeypatch, slots):
    got = _launch(tmp_path, monkeypatch, {"method": {"name": "ce"},
                                          "train": {"threads": "auto"}}, slots)
    planned = max(1, available_cores() // slots)
    assert got["threads"] == planned
    assert got["env"] == {"OMP_NUM_THREADS": str(planned), "MKL_NUM_THREADS": str(planned),
                          "OMP_WAIT_POLICY": "PASSIVE", "MFM_THREADS": str(planned),
                          "MFM_THREADS_FROM": "auto"}
    assert f"{planned} thread(s) (passive; {available_cores()} cores / {slots} slots)" \
        in got["log"]


def test_a_fixed_count_reaches_the_run(tmp_path, monkeypatch):
    got = _launch(tmp_path, monkeypatch, {"method": {"name": "ce"}, "train": {"threads": 1}}, 2)
    assert got["threads"] == 1 and got["env"]["MFM_THREADS_FROM"] == "1"


def test_a_config_recorded_before_the_key_runs_as_auto(tmp_path, monkeypatch):
    got = _launch(tmp_path, monkeypatch, {"method": {"name": "ce"}}, 1)
    assert got["threads"] == available_cores() and got["env"]["MFM_THREADS_FROM"] == "auto"
