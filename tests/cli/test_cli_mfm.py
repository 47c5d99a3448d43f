"""MFM from the CLI: an end-to-end run recording meta loss and modulation statistics, transfer
by run id, and bad input (exit 2, no row)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from mfm.cli.main import cli
from mfm.store import Database, repo

TINY = ["--set", "model.name=resnet_tiny", "--set", "train.epochs=1", "--set", "device=cpu",
        "--set", "train.log_every=2"]


def run(db_path, *args):
    return CliRunner().invoke(cli, ["run", "--headless", "--db", str(db_path), *TINY, *args])


def n_runs(db_path) -> int:
    with Database(str(db_path)) as db:
        return len(repo.list_runs(db))


def test_mfm_end_to_end_and_transfer_by_run_id(db_path, cli_env):
    res = run(db_path, "--set", "method.name=mfm", "--set", "mfm.sites=penultimate")
    assert res.exit_code == 0, res.output
    with Database(str(db_path)) as db:
        keys = repo.metric_keys(db, 1)
        assert {"loss", "meta_loss", "mod/penultimate/gamma_mean",
                "mod/penultimate/gamma_std"} <= set(keys)
        assert all(p.value > 0 for p in repo.get_step_series(db, 1, "mod/penultimate/gamma_mean"))
        assert repo.get_run(db, 1).config["mfm"]["sites"] == "penultimate"
    # transfer the finished run's modulator, by id, to another split without a meta set
    res = run(db_path, "--set", "method.name=mfm", "--set", "mfm.modulator_from=1",
              "--set", "data.meta_per_class=0", "--set", "data.seed=5")
    assert res.exit_code == 0, res.output
    with Database(str(db_path)) as db:
        assert "meta_loss" not in repo.metric_keys(db, 2)
        assert repo.get_run(db, 2).status == "completed"


def test_mwnet_end_to_end(db_path, cli_env):
    res = run(db_path, "--set", "method.name=mwnet")
    assert res.exit_code == 0, res.output
    with Database(str(db_path)) as db:
        assert {"meta_loss", "weight_mean", "weight_std"} <= set(repo.metric_keys(db, 1))


def test_mfm_bn_scale_shift_records_both_statistics(db_path, cli_env):
    res = run(db_path, "--set", "method.name=mfm", "--set", "mfm.sites=bn",
              "--set", "mfm.modulator=free", "--set", "mfm.form=scale_shift")
    assert res.exit_code == 0, res.output
    with Database(str(db_path)) as db:
        keys = set(repo.metric_keys(db, 1))
    assert "mod/layer1.0.bn1/beta_std" in keys and "mod/layer3.0.bn2/gamma_mean" in keys


BAD = [
    (["--set", "method.name=ce", "--set", "mfm.sites=bn"],
     "mfm.sites: applies only to method.name in mfm"),
    (["--set", "method.name=mwnet", "--set", "data.meta_per_class=0"],
     "data.meta_per_class: must be >= 1"),
    (["--set", "method.name=mfm", "--set", "mfm.apply=everywhere"], "mfm.apply"),
    (["--set", "method.name=mfm", "--set", "mfm.modulator=free_per_class",
      "--set", "mfm.sites=bn"], "hands the network its label"),
    (["--set", "method.name=mfm", "--set", "mfm.form=scale_shift"], "hands the network its label"),
    (["--set", "method.name=mfm", "--set", "mfm.modulator_from=99"], "no run 99"),
]


@pytest.mark.parametrize("args, words", BAD, ids=[b[1][:30] for b in BAD])
def test_bad_mfm_input(db_path, cli_env, args, words):
    res = run(db_path, *args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and words in lines[0]
    assert not db_path.exists() or n_runs(db_path) == 0


def test_modulator_from_a_run_that_is_not_mfm_or_a_bad_file(db_path, cli_env, tmp_path):
    assert run(db_path, "--set", "method.name=ce").exit_code == 0  # a ce run: id 1
    res = run(db_path, "--set", "method.name=mfm", "--set", "mfm.modulator_from=1")
    assert res.exit_code == 2 and "run 1 is not an MFM run" in res.output
    bogus = tmp_path / "bogus.pt"
    torch.save({"weights": torch.zeros(2)}, bogus)
    res = run(db_path, "--set", "method.name=mfm", "--set", f"mfm.modulator_from={bogus}")
    assert res.exit_code == 2 and "not a modulator checkpoint" in res.output
    assert n_runs(db_path) == 1


def test_show_json_carries_mfm_config(db_path, cli_env):
    assert run(db_path, "--set", "method.name=mfm").exit_code == 0
    doc = json.loads(CliRunner().invoke(cli, ["show", "1", "--db", str(db_path), "--json"]).output)
    assert doc["run"]["config"]["method"]["name"] == "mfm"
    assert doc["run"]["config"]["mfm"]["modulator"] == "network"
