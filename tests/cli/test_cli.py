"""The mfm CLI through click's CliRunner, on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from mfm.cli.main import cli
from mfm.store import Database, repo

TINY = ["--set", "model.name=resnet_tiny", "--set", "train.epochs=2", "--set", "device=cpu",
        "--set", "train.batch_size=64"]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def count_runs(db_path) -> int:
    if not db_path.exists():
        return 0
    with sqlite3.connect(db_path) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        if "runs" not in tables:
            return 0
        return con.execute("select count(*) from runs").fetchone()[0]


def test_validation_split_is_recorded(db_path, cli_env):
    res = invoke("run", "--headless", "--db", str(db_path), *TINY, "--set",
                 "data.val_per_class=5", "--set", "train.epochs=1")
    assert res.exit_code == 0, res.output
    with Database(str(db_path)) as db:
        r = repo.list_runs(db)[0]
        assert 0.0 <= r.summary["final"]["val_acc"] <= 1.0
        assert [e for e, _ in repo.get_epoch_series(db, r.id)["val_acc"]] == [0]


COMMANDS = [[], ["run"], ["runs"], ["show"], ["export"], ["datasets"], ["datasets", "preview"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "mfm")
def test_help_with_example(cmd):
    res = invoke(*cmd, "--help")
    assert res.exit_code == 0
    assert "Example" in res.output


def test_headless_run_records_everything(db_path, cli_env):
    res = invoke("run", "--headless", "--db", str(db_path), "--name", "tiny", *TINY)
    assert res.exit_code == 0, res.output
    assert "final" in res.output and "best" in res.output and "many" in res.output
    with Database(str(db_path)) as db:
        runs = repo.list_runs(db)
        assert len(runs) == 1
        r = runs[0]
        assert r.status == "completed" and r.name == "tiny" and r.epoch == 1
        assert r.split_hash and r.finished_at >= r.started_at >= r.created_at
        assert r.config["model"]["name"] == "resnet_tiny"
        assert sorted(repo.get_all_class_accuracy(db, r.id)) == [0, 1]
        assert len(repo.get_class_accuracy(db, r.id)) == 10
        assert r.summary["final"]["epoch"] == 1 and r.summary["best"]["acc"] >= \
            r.summary["final"]["acc"]
        assert len(r.confusion) == 10
        assert (db_path.parent / "runs" / str(r.id) / "last.pt").exists() or \
            r.checkpoint_dir
    # show: per-class accuracy next to each class's training count
    res = invoke("show", "1", "--db", str(db_path), "--json")
    assert res.exit_code == 0
    doc = json.loads(res.output)
    trains = [c["train"] for c in doc["classes"]]
    assert trains == sorted(trains, reverse=True) and trains[0] > trains[-1]
    assert all(c["acc"] is not None for c in doc["classes"])
    res = invoke("show", "1", "--db", str(db_path))
    assert "per-class test accuracy" in res.output and "train" in res.output
    res = invoke("show", "1", "--db", str(db_path), "--plot", "--vs", "1")
    assert res.exit_code == 0 and "per-class test accuracy" in res.output
    assert f"0:{trains[0]}" in res.output.replace(" ", "") or f"{trains[0]}" in res.output
    res = invoke("runs", "--db", str(db_path), "--json")
    assert json.loads(res.output)[0]["status"] == "completed"
    res = invoke("runs", "--db", str(db_path))
    assert "completed" in res.output
    # export
    res = invoke("export", "1", "--db", str(db_path), "--format", "csv")
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("epoch,") and "class_9_acc" in lines[0] and len(lines) == 3
    res = invoke("export", "1", "--db", str(db_path), "--format", "json")
    doc = json.loads(res.output)
    assert set(doc["epochs"]) >= {"acc", "train_loss", "test_loss"}
    assert doc["run"]["id"] == 1


def test_mfm_db_env_and_group_option(db_path, cli_env, monkeypatch):
    monkeypatch.setenv("MFM_DB", str(db_path))
    res = invoke("runs", "--json")
    assert res.exit_code == 0 and json.loads(res.output) == []
    assert db_path.exists()
    other = db_path.parent / "other.db"
    res = invoke("--db", str(other), "runs", "--json")
    assert res.exit_code == 0 and other.exists()


BAD = [
    (["--set", "nosuch=1"], "nosuch: unknown key"),
    (["--set", "data.name=imagenet"], "data.name: must be one of"),
    (["--set", "method.name=magic"], "method.name: must be one of"),
    (["--set", "data.imbalance_factor=0.5"], "data.imbalance_factor: must be >= 1"),
    (["--set", "data.meta_per_class=100000"], "data.meta_per_class"),
    (["--set", "train.epochs=0"], "train.epochs: must be >= 1"),
    (["--set", "train.batch_size=0"], "train.batch_size: must be >= 1"),
    (["--set", "data.name=mnist", "--set", "data.root=/no/such/dir"], "data.root"),
    (["--set", "device=cuda:7"], "device"),
]


@pytest.mark.parametrize("args, words", BAD, ids=[b[1].split(":")[0] for b in BAD])
def test_bad_input_one_line_exit_2_no_row(db_path, cli_env, args, words):
    res = CliRunner().invoke(cli, ["run", "--headless", "--db", str(db_path), *args])
    assert res.exit_code == 2, res.output
    err = res.stderr if hasattr(res, "stderr") else res.output
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert count_runs(db_path) == 0


def test_bad_config_files(db_path, cli_env, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname=")
    for path, words in ((bad, "not valid TOML"), (tmp_path / "none.toml", "cannot read")):
        res = CliRunner().invoke(cli, ["run", "--headless", "--db", str(db_path), "--config",
                                       str(path)])
        assert res.exit_code == 2 and words in res.output
    assert count_runs(db_path) == 0


def test_db_that_is_not_sqlite(tmp_path, cli_env):
    notdb = tmp_path / "notes.txt"
    notdb.write_text("hello, not a database\n" * 10)
    before = notdb.read_bytes()
    res = CliRunner().invoke(cli, ["run", "--headless", "--db", str(notdb), *TINY])
    assert res.exit_code == 2
    assert "not a SQLite database" in res.output and len(res.output.strip().splitlines()) == 1
    assert notdb.read_bytes() == before


def test_show_and_export_unknown_id(db_path, cli_env):
    for cmd in (["show", "42"], ["export", "42", "--format", "json"]):
        res = CliRunner().invoke(cli, [*cmd, "--db", str(db_path)])
        assert res.exit_code == 2 and "no run 42" in res.output


def test_datasets_preview_counts(cli_env):
    res = invoke("datasets", "preview", "--json")
    counts = json.loads(res.output)
    assert counts["meta"] == [10] * 10 and counts["test"] == [50] * 10
    assert counts["train"][0] == max(counts["train"])
    assert counts["train"][0] // counts["train"][-1] in (9, 10, 11)
    res = invoke("datasets", "preview", "--set", "data.profile=step")
    assert res.exit_code == 0 and "step profile" in res.output
    res = invoke("datasets", "preview", "--set", "data.val_per_class=5", "--set",
                 "data.head_count=40")
    assert res.exit_code == 0 and "val 50," in res.output
    counts = json.loads(invoke("datasets", "preview", "--json", "--set", "data.val_per_class=5",
                               "--set", "data.head_count=40").output)
    assert counts["val"] == [5] * 10 and counts["train"][0] == 40
    res = CliRunner().invoke(cli, ["datasets", "preview", "--set", "data.profile=zigzag"])
    assert res.exit_code == 2 and "data.profile" in res.output


@pytest.mark.parametrize("args, words", [
    (["--slot", "cpu7"], "--slot: no slot cpu7 on this host"),
    (["--slot", "fast"], "--slot: must be 'any' or a slot name"),
    (["--headless", "--slot", "cpu0"], "--slot: only for queued runs"),
])
def test_bad_slot_one_line_exit_2_no_row(db_path, cli_env, args, words):
    res = CliRunner().invoke(cli, ["run", "--db", str(db_path), *TINY, *args])
    assert res.exit_code == 2, res.output
    assert words in res.output and len(res.output.strip().splitlines()) == 1
    assert count_runs(db_path) == 0
