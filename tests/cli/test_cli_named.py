"""Saved dataset specs and named configs, used from the CLI by name."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mfm.cli.main import cli
from mfm.config import ConfigError
from mfm.specs import check_dataset_spec, check_named_config, compose
from mfm.store import Database, repo


def test_compose_order_and_checks(tmp_path):
    spec = {"data": {"name": "digits", "imbalance_factor": 5.0}}
    named = {"method": {"name": "focal", "focal_gamma": 2.0}, "train": {"epochs": 3}}
    cfg = compose(dataset_spec=spec, named_config=named, overrides=["train.epochs=4"])
    assert (cfg.data.imbalance_factor, cfg.method.focal_gamma, cfg.train.epochs) == (5.0, 2.0, 4)
    with pytest.raises(ConfigError, match="only data"):
        check_dataset_spec({"data": {}, "train": {"epochs": 1}})
    with pytest.raises(ConfigError, match="no data"):
        check_named_config({"data": {"name": "digits"}})
    with pytest.raises(ConfigError, match="data.imbalance_factor"):
        check_dataset_spec({"data": {"imbalance_factor": 0.5}})


def test_run_by_name_records_which_versions(db_path, cli_env):
    with Database(str(db_path)) as db:
        spec_id = repo.save_dataset_spec(db, "dig5", {"data": {"name": "digits",
                                                               "imbalance_factor": 5.0}})
        v1 = repo.save_config(db, "tiny", {"model": {"name": "resnet_tiny"},
                                           "train": {"epochs": 1}, "device": "cpu"})
        v2 = repo.save_config(db, "tiny", {"model": {"name": "resnet_tiny"},
                                           "train": {"epochs": 2}, "device": "cpu"})
    assert (v1.version, v2.version) == (1, 2)
    res = CliRunner().invoke(cli, ["run", "--headless", "--db", str(db_path), "--dataset", "dig5",
                                   "--config-name", "tiny@1"])
    assert res.exit_code == 0, res.output
    with Database(str(db_path)) as db:
        (run,) = repo.list_runs(db)
        assert run.dataset_spec_id == spec_id and run.config_id == v1.id
        assert run.config["data"]["imbalance_factor"] == 5.0 and run.epochs_total == 1
    for args, words in ((["--dataset", "nope"], "--dataset: no dataset spec 'nope' (have: dig5)"),
                        (["--config-name", "tiny@9"], "--config-name: no config 'tiny@9'")):
        res = CliRunner().invoke(cli, ["run", "--headless", "--db", str(db_path), *args])
        assert res.exit_code == 2 and words in res.output
