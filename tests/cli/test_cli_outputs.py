"""What ``mfm`` writes for a user and the small faults around it, through the real entry point
against a real SQLite file, the records fingerprinted before and after: ``-o`` onto devices,
FIFOs, links and files; CSV cells a spreadsheet would run; ids past 64 bits; duplicate ids;
sweeps that are empty or too large to queue without asking."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from proc_helpers import fingerprint

from mfm.cli.main import main
from mfm.cli.output import safe_cell
from mfm.store import Database, queue, repo


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    db_file = tmp_path / "experiments.db"
    with Database(str(db_file)) as db:
        run_id = repo.create_run(db, config={"method": {"name": "ce"}}, epochs_total=2,
                                 name="=cmd|' /C calc'!A0", status="queued")
        for ep in (0, 1):
            repo.log_epoch(db, run_id, ep, {"acc": 0.5, "train_loss": -0.25}, [0.9, 0.1])
    return db_file


def call(db: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main([*argv, "--db", str(db)])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- -o targets -------------------------------------------------------------------------------

def test_output_to_a_regular_file_replaces_it_and_keeps_its_mode(env, capsys, tmp_path):
    target = tmp_path / "run.csv"
    target.write_text("old\n")
    target.chmod(0o640)
    code, out, err = call(env, ["export", "1", "--format", "csv", "-o", str(target)], capsys)
    assert code == 0 and out == ""
    assert err.strip() == f"wrote {target}"
    lines = target.read_text().splitlines()
    assert lines[0] == "epoch,acc,train_loss,class_0_acc,class_1_acc"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]  # as mfm show numbers them
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_output_to_a_device_writes_through_and_never_replaces_it(env, capsys):
    before = fingerprint(env)
    code, _, err = call(env, ["export", "1", "--format", "csv", "-o", "/dev/full"], capsys)
    assert code == 2
    assert one_error(err) == "error: --output: No space left on device: /dev/full"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # still a device
    code, _, err = call(env, ["export", "1", "--format", "csv", "-o", "/dev/null"], capsys)
    assert code == 0 and err.strip().startswith("wrote ") and "/dev/null" in err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert fingerprint(env) == before


def test_output_to_a_fifo_feeds_its_reader_and_leaves_the_fifo(env, capsys, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    code, _, err = call(env, ["export", "1", "--format", "json", "-o", str(fifo)], capsys)
    reader.join(timeout=30)
    assert code == 0, err
    assert not reader.is_alive() and got and got[0].startswith(b"{")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_output_through_a_symlink_writes_its_target_and_keeps_the_link(env, capsys, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    code, _, err = call(env, ["export", "1", "--format", "csv", "-o", str(link)], capsys)
    assert code == 0, err
    assert err.strip() == f"wrote {real} (through the link {link})"
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text().startswith("epoch,")


def test_output_dash_is_stdout_and_a_folder_is_refused(env, capsys, tmp_path):
    code, out, err = call(env, ["export", "1", "--format", "csv", "-o", "-"], capsys)
    assert code == 0 and out.startswith("epoch,") and err == ""
    before = fingerprint(env)
    code, _, err = call(env, ["export", "1", "--format", "csv", "-o", str(tmp_path)], capsys)
    assert code == 2
    assert one_error(err) == f"error: --output: {tmp_path} is a directory; give a file path"
    assert fingerprint(env) == before


# -- CSV injection ----------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["=cmd|' /C calc'!A0", "@SUM(A1:A9)", "+1+2", "-2+3",
                                  "\tx", "\rx"])
def test_a_cell_that_reads_as_a_formula_is_quoted(text):
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("value", [-0.25, "-0.25", "1e-3", "mfm", 3, None, ""])
def test_numbers_and_plain_text_stay_as_they_are(value):
    assert safe_cell(value) == value


def test_sweep_export_neutralises_an_arm_named_like_a_formula(env, capsys, tmp_path):
    sweep = tmp_path / "evil.toml"
    sweep.write_text('name = "evil"\n[[arm]]\nname = "=cmd|\' /C calc\'!A0"\n'
                     '"method.name" = "ce"\n[[arm]]\nname = "@SUM(A1)"\n'
                     '"method.name" = "focal"\n')
    code, _, err = call(env, ["sweep", "run", str(sweep), "--executor", "slurm"], capsys)
    assert code == 0, err
    code, out, err = call(env, ["sweep", "export", "evil", "--format", "csv"], capsys)
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert rows[0].split(",")[1] == "'=cmd|' /C calc'!A0" or "\"'=cmd" in rows[0]
    assert ",'@SUM(A1)," in rows[1]
    assert not any(cell.startswith(("=", "@")) for row in rows for cell in row.split(","))


# -- ids and duplicates -----------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["resume", "99999999999999999999"],
                                  ["cancel", "99999999999999999999"],
                                  ["show", "99999999999999999999"]])
def test_an_id_past_64_bits_is_no_run_in_one_line(env, capsys, argv):
    before = fingerprint(env)
    code, _, err = call(env, argv, capsys)
    assert code == 2
    assert one_error(err).startswith("error: ID: no run 99999999999999999999 in ")
    assert fingerprint(env) == before


def test_cancel_of_the_same_id_twice_cancels_it_once(env, capsys):
    code, out, _ = call(env, ["cancel", "1", "1"], capsys)
    assert code == 0
    assert out.splitlines() == ["run 1: cancelled (it was queued)"]
    with Database(str(env)) as db:
        assert repo.get_run(db, 1).status == "cancelled"


# -- sweeps: empty, large ---------------------------------------------------------------------

def test_an_empty_grid_is_refused(env, capsys, tmp_path):
    sweep = tmp_path / "empty.toml"
    sweep.write_text('name = "empty"\n[grid]\n')
    before = fingerprint(env)
    code, _, err = call(env, ["sweep", "run", str(sweep)], capsys)
    assert code == 2
    assert one_error(err).startswith("error: grid: the table is empty")
    assert fingerprint(env) == before


def test_a_sweep_of_more_than_200_runs_is_queued_only_with_yes(env, capsys, tmp_path):
    sweep = tmp_path / "big.toml"
    sweep.write_text('name = "big"\n[grid]\nseed = [' + ", ".join(map(str, range(201))) + "]\n")
    before = fingerprint(env)
    code, _, err = call(env, ["sweep", "run", str(sweep), "--executor", "slurm"], capsys)
    assert code == 2
    assert one_error(err) == ("error: --yes: this would queue 201 runs (more than 200); check "
                              "with mfm sweep plan, then pass --yes")
    assert fingerprint(env) == before
    code, _, err = call(env, ["sweep", "run", str(sweep), "--executor", "slurm", "--yes"],
                        capsys)
    assert code == 0, err
    with Database(str(env)) as db:
        assert queue.count_by_status(db)["queued"] == 201 + 1


# -- what a new user trips on -----------------------------------------------------------------

def test_logs_of_a_run_trained_in_the_foreground_says_where_its_output_went(env, capsys):
    with Database(str(env)) as db:
        queue.transition(db, 1, "starting", allowed_from=("queued",))
        queue.transition(db, 1, "running")
        queue.transition(db, 1, "completed")
    code, _, err = call(env, ["logs", "1"], capsys)
    assert code == 2
    assert one_error(err) == ("error: ID: run 1 has no log: it was trained in the foreground "
                              "(mfm run --headless prints to its terminal); its results: mfm "
                              "show 1")


def test_sweep_plan_says_what_sweep_run_will_refuse(env, capsys, tmp_path):
    sweep = tmp_path / "nodata.toml"
    sweep.write_text(f'name = "nodata"\n[data]\nname = "imagefolder"\nroot = "{tmp_path}/gone"\n'
                     '[grid]\nseed = [0, 1]\n')
    before = fingerprint(env)
    code, out, err = call(env, ["sweep", "plan", str(sweep)], capsys)
    assert code == 0 and "2 to run" in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "warning: mfm sweep run will refuse this plan: cell 1 (")
    assert "data.root" in lines[0]
    code, _, run_err = call(env, ["sweep", "run", str(sweep)], capsys)
    assert code == 2 and lines[0].split("refuse this plan: ")[1] in run_err
    assert fingerprint(env) == before
