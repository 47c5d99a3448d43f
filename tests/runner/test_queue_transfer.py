"""Queueing a transfer run (mfm.modulator_from) is torch-free: the queue-time check reads only
the source's modulator.json; the full check (load the .pt, build the model) is the run
process's. A modulator saved without its description is refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mfm.config import config_to_dict, load_config
from mfm.methods.transfer import (
    DESCRIPTION_FILE,
    MODULATOR_FILE,
    MODULATOR_KIND,
    ModulatorFileError,
    check_description,
    file_description,
    read_description,
)
from mfm.runner.submit import SubmitError, submit_runs
from mfm.store import Database, repo

TINY = ["model.name=resnet_tiny", "train.epochs=1", "device=cpu"]
SOURCE = [*TINY, "method.name=mfm"]


def description(**opts) -> dict:
    o = load_config(None, [*SOURCE, *(f"mfm.{k}={v}" for k, v in opts.items())]).mfm
    return file_description({"sites": {"penultimate": 16}, "form": o.form, "source": o.modulator,
                             "inputs": o.inputs, "bound": o.bound, "base_loss": o.base_loss},
                            model="resnet_tiny", sites=o.sites, hidden=o.hidden, num_classes=10)


def finished_source(db: Database, folder: Path, *, desc: dict | None) -> int:
    """A completed mfm run whose folder holds a modulator.pt (never read at queue time) and,
    unless ``desc`` is None, its modulator.json."""
    cfg = load_config(None, SOURCE)
    run_id = repo.create_run(db, config=config_to_dict(cfg), epochs_total=1, status="completed")
    folder.mkdir(parents=True)
    (folder / MODULATOR_FILE).write_bytes(b"not read when queueing")
    if desc is not None:
        (folder / DESCRIPTION_FILE).write_text(json.dumps(desc))
    repo.update_run(db, run_id, checkpoint_dir=str(folder))
    return run_id


def queue(db: Database, tmp_path: Path, *overrides: str) -> list[int]:
    cfg = load_config(None, [*SOURCE, *overrides])
    return submit_runs(db, db_target=str(tmp_path / "experiments.db"),
                       runs_root=tmp_path / "runs", configs=[cfg], names=[None])


@pytest.mark.slow  # a real subprocess
def test_queueing_a_transfer_never_imports_torch(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from mfm.config import config_to_dict, load_config
        from mfm.runner.submit import submit_runs
        from mfm.store import Database, repo

        tmp = Path({str(tmp_path)!r})
        source = load_config(None, {SOURCE!r})
        with Database(str(tmp / "experiments.db")) as db:
            src = repo.create_run(db, config=config_to_dict(source), epochs_total=1,
                                  status="completed")
            folder = tmp / "runs" / str(src)
            folder.mkdir(parents=True)
            (folder / "modulator.pt").write_bytes(b"x")
            (folder / "modulator.json").write_text(json.dumps({json.dumps(description())}))
            repo.update_run(db, src, checkpoint_dir=str(folder))
            cfg = load_config(None, {SOURCE!r} + [f"mfm.modulator_from={{src}}",
                                                  "data.meta_per_class=0"])
            ids = submit_runs(db, db_target=str(tmp / "experiments.db"),
                              runs_root=tmp / "runs", configs=[cfg], names=["transfer"])
            print(repo.get_run(db, ids[0]).status, "torch" in sys.modules)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["queued", "False"], res.stdout


def test_a_transfer_that_does_not_fit_is_refused_at_queue_time(tmp_path):
    with Database(str(tmp_path / "experiments.db")) as db:
        src = finished_source(db, tmp_path / "src", desc=description())
        feats = finished_source(db, tmp_path / "feats", desc=description(inputs="features"))
        for ref, overrides, line in [
            (src, ["mfm.inputs=features"], "mfm.modulator_from: the saved modulator has "
             "mfm.inputs='loss_freq', this run asks for 'features'"),
            (src, ["mfm.base_loss=ce"], "mfm.modulator_from: the saved modulator reads the loss "
             "of mfm.base_loss=balanced_softmax, this run asks for ce (set "
             "mfm.base_loss=balanced_softmax)"),
            (feats, ["mfm.inputs=features", "mfm.sites=stage"], "mfm.modulator_from: site/channel "
             "mismatch: the saved modulator has [penultimate:16] (mfm.sites=penultimate), this "
             "run asks for mfm.sites=stage"),
        ]:
            with pytest.raises(SubmitError) as e:
                queue(db, tmp_path, f"mfm.modulator_from={ref}", *overrides)
            assert str(e.value) == line
        assert sorted(r.id for r in repo.list_runs(db)) == [src, feats]  # nothing queued
        new = queue(db, tmp_path, f"mfm.modulator_from={src}")
        assert [repo.get_run(db, i).status for i in new] == ["queued"]


def test_another_site_kind_is_refused_at_queue_time():
    opts = load_config(None, [*SOURCE, "mfm.sites=stage", "mfm.inputs=features"]).mfm
    with pytest.raises(ModulatorFileError) as e:
        check_description(description(inputs="features"), opts)
    assert str(e.value) == ("mfm.modulator_from: site/channel mismatch: the saved modulator has "
                            "[penultimate:16] (mfm.sites=penultimate), this run asks for "
                            "mfm.sites=stage")
    check_description(description(inputs="features"),
                      load_config(None, [*SOURCE, "mfm.inputs=features"]).mfm)


def test_a_modulator_without_its_description_is_refused_with_what_to_do(tmp_path):
    with Database(str(tmp_path / "experiments.db")) as db:
        src = finished_source(db, tmp_path / "src", desc=None)
        with pytest.raises(SubmitError) as e:
            queue(db, tmp_path, f"mfm.modulator_from={src}")
        path = tmp_path / "src" / MODULATOR_FILE
        assert str(e.value) == (f"mfm.modulator_from: {str(path)!r} has no modulator.json "
                                f"beside it (saved by an older version); re-run run {src} to "
                                f"queue this transfer, or train it now with mfm run --headless")
        with pytest.raises(SubmitError, match="re-run the run that wrote it"):
            queue(db, tmp_path, f"mfm.modulator_from={path}")
        with pytest.raises(SubmitError, match="does not exist"):
            queue(db, tmp_path, f"mfm.modulator_from={tmp_path / 'none.pt'}")
        assert [r.id for r in repo.list_runs(db)] == [src]


@pytest.mark.parametrize("text", ["", "{", "[]", json.dumps({"kind": "other"}),
                                  json.dumps({"kind": MODULATOR_KIND, "describe": {}})])
def test_a_damaged_description_is_one_line(tmp_path, text):
    path = tmp_path / DESCRIPTION_FILE
    path.write_text(text)
    with pytest.raises(ModulatorFileError, match="is not a modulator description"):
        read_description(path)
