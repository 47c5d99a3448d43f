"""A two-stage sweep through ``mfm``'s entry point: ``mfm sweep plan`` shows each child's
parent cell, ``--headless`` trains stage 1 then stage 2 from its weights (the cells recorded
under their final identity, so the file run again reuses them all), and a queued sweep records
every child's parent run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfm.cli.main import main
from mfm.store import Database, repo
from mfm.store import sweeps as sweep_store
from mfm.store.hashing import config_hash

SWEEP = """
name = "crt"
device = "cpu"
[data]
name = "digits"
[model]
name = "resnet_tiny"
[train]
epochs = 1
batch_size = 64

[grid]
seed = [0, 1]

[[arm]]
name = "crt"
"method.name" = "ce"
"train.init_from" = "arm:ce"
"train.trainable" = "classifier"
"data.sampler" = "class_balanced"

[[arm]]
name = "ce"
"method.name" = "ce"
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    import mfm.runner.launch as launch

    monkeypatch.setattr(launch, "start_detached_supervisor", lambda *a, **k: 4242)
    (tmp_path / "crt.toml").write_text(SWEEP, encoding="utf-8")
    return tmp_path / "experiments.db"


def call(db: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main([*argv, "--db", str(db)])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_shows_each_childs_parent_cell(env: Path, capsys) -> None:
    code, out, err = call(env, ["sweep", "plan", "crt.toml"], capsys)
    assert code == 0, err
    rows = [ln for ln in out.splitlines() if "│" in ln and "seed" not in ln]
    # cells 1, 2: crt at seeds 0, 1, after cells 3, 4 (ce at seeds 0, 1)
    assert "after" in out and "cell 3" in rows[0] and "cell 4" in rows[1], out
    assert "cell" not in rows[2].split("│")[-2] and "cell" not in rows[3].split("│")[-2]
    code, out, err = call(env, ["sweep", "plan", "crt.toml", "--json"], capsys)
    cells = json.loads(out)["cells"]
    assert [c["parent_idx"] for c in cells] == [2, 3, None, None]
    assert json.loads(out)["run_refuses"] is None


def test_headless_two_stage_sweep_then_queued_again_reuses_everything(env: Path,
                                                                      capsys) -> None:
    code, out, err = call(env, ["sweep", "run", "crt.toml", "--headless"], capsys)
    assert code == 0, err[-3000:]
    with Database(str(env)) as db:
        cells = {c.idx: c for c in sweep_store.sweep_cells(db, 1)}
        assert {c.run.status for c in cells.values()} == {"completed"}
        for child, parent in ((0, 2), (1, 3)):
            rec, prec = cells[child].run, cells[parent].run
            assert rec.parent_id == prec.id and prec.id < rec.id
            assert rec.config["train"]["init_from"] == str(prec.id)
            assert cells[child].config_hash == config_hash(rec.config)
            assert [k.id for k in repo.children(db, prec.id)] == [rec.id]
        count = len(repo.list_runs(db))
    code, out, err = call(env, ["sweep", "plan", "crt.toml"], capsys)
    assert code == 0 and "4 reused" in out and "nothing to run" in out, out
    code, out, err = call(env, ["sweep", "run", "crt.toml"], capsys)
    assert code == 0 and "queued 0 new and resumed 0 cells" not in err, err
    with Database(str(env)) as db:
        assert len(repo.list_runs(db)) == count


def test_queued_two_stage_sweep_records_the_parents(env: Path, capsys) -> None:
    code, out, err = call(env, ["sweep", "run", "crt.toml"], capsys)
    assert code == 0, err
    assert "queued 4 new" in err
    with Database(str(env)) as db:
        cells = {c.idx: c for c in sweep_store.sweep_cells(db, 1)}
        assert {c.run.status for c in cells.values()} == {"queued"}
        assert cells[0].run.parent_id == cells[2].run.id
        assert cells[1].run.parent_id == cells[3].run.id
        assert cells[2].run.parent_id is None and cells[2].run.id < cells[0].run.id
    code, out, err = call(env, ["show", str(cells[2].run.id)], capsys)
    assert f"children {cells[0].run.id} (queued)" in out
