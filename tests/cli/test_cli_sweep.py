"""``mfm sweep``: through mfm's real entry point against a real SQLite file.

The queued path never starts a real supervisor here: ``start_detached_supervisor`` is
replaced in process by a stub that records its calls (there is no switch that keeps ``mfm
sweep run`` from starting a detached supervisor), so the queued runs stay queued until the
test cancels them. The headless path trains TINY cells (digits, resnet_tiny, one epoch) in this
process.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from proc_helpers import fingerprint

from mfm.cli.main import main
from mfm.store import Database, queue, repo
from mfm.store import sweeps as sweep_store
from mfm.store.hashing import config_hash

TINY = """
device = "cpu"
[data]
name = "digits"
[model]
name = "resnet_tiny"
[train]
epochs = 1
batch_size = 64
"""


def sweep_file(seeds: str = "[0, 1]", methods: str = '["ce", "balanced_softmax"]',
               top: str = 'name = "tiny"', extra: str = "") -> str:
    return f'{top}\n{TINY}\n[grid]\n"method.name" = {methods}\nseed = {seeds}\n{extra}'


@dataclass
class Env:
    tmp: Path
    db: Path
    supervisor_calls: list[tuple[str, Path]] = field(default_factory=list)

    def write(self, text: str, name: str = "tiny.toml") -> str:
        (self.tmp / name).write_text(text, encoding="utf-8")
        return name

    def runs(self):
        with Database(str(self.db)) as db:
            return repo.list_runs(db, confusion=False)

    def cells(self, sweep_id: int):
        with Database(str(self.db)) as db:
            return sweep_store.sweep_cells(db, sweep_id)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.delenv("MFM_DEBUG", raising=False)
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(tmp_path)
    e = Env(tmp_path, tmp_path / "experiments.db")

    import mfm.runner.launch as launch

    def no_supervisor(db_target: str, runs_root: Path, *a, **k) -> int:
        e.supervisor_calls.append((db_target, runs_root))
        return 4242

    monkeypatch.setattr(launch, "start_detached_supervisor", no_supervisor)
    with Database(str(e.db)):  # the records exist before any case (for the fingerprint)
        pass
    return e


def call(env: Env, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run mfm's entry point in this process; (exit code, stdout, stderr)."""
    try:
        main([*argv, "--db", str(env.db)])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[:2000]}"
    assert "Traceback" not in err
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def strict_json(text: str):
    def no_constant(name: str):
        raise AssertionError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=no_constant)


# -- plan -------------------------------------------------------------------------------------

def test_plan_prints_the_cells_and_records_nothing(env: Env,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    f = env.write(sweep_file())
    before = fingerprint(env.db)
    code, out, err = call(env, ["sweep", "plan", f], capsys)
    assert code == 0, err
    assert "ce" in out and "balanced_softmax" in out
    assert out.count(" new ") == 4
    assert "4 cells in 2 arms" in out and "4 to run" in out and "no estimate" in out
    code, out, err = call(env, ["sweep", "plan", f, "--json"], capsys)
    assert code == 0, err
    plan = strict_json(out)
    assert [(c["arm"], c["seed"], c["action"]) for c in plan["cells"]] == [
        ("ce", 0, "new"), ("ce", 1, "new"), ("balanced_softmax", 0, "new"),
        ("balanced_softmax", 1, "new")]
    assert fingerprint(env.db) == before
    assert env.supervisor_calls == []


# -- bad input: one line, exit 2, nothing queued or recorded -------------------------------------

BAD_FILES = {
    "unknown-key": (sweep_file(extra='"optim.lrr" = [0.1]'),
                    ("optim.lrr", "did you mean optim.lr")),
    "wrong-type-one-cell": (sweep_file(extra='"optim.lr" = [0.1, "fast"]'),
                            ("cell 3", "ce · lr=fast, seed 0", "optim.lr", "expected float")),
    "empty-axis": (sweep_file(extra='"optim.lr" = []'), ("grid.optim.lr", "empty axis")),
    "too-many-cells": (sweep_file(seeds=str(list(range(5001))),
                                  methods='["ce", "balanced_softmax", "focal"]'),
                       ("15003 cells", "10000", "--max-cells")),
    "arm-twice": (sweep_file(extra='[[arm]]\nname = "x"\n"optim.lr" = 0.2\n'
                                   '[[arm]]\nname = "x"\n"optim.lr" = 0.3\n'),
                  ("arm 2", "'x'", "twice")),
    "exclude-unknown-key": (sweep_file(extra='[[exclude]]\n"optim.lrr" = 0.1\n'),
                            ("exclude 1", "optim.lrr")),
    "duplicate-cells": (sweep_file(extra='[[arm]]\nname = "ce again"\n"method.name" = "ce"\n'),
                        ("ce again", "same settings as cell 1")),
    "exclude-date": (sweep_file(extra='[[exclude]]\nseed = 1979-05-27\n'),
                     ("exclude 1", "seed")),
    "unknown-dataset-spec": (sweep_file(top='name = "tiny"\ndataset = "nope"'),
                             ("dataset", "'nope'", "none saved")),
    "file-cap": (sweep_file(top='name = "tiny"\nmax_cells = 3'), ("4 cells", "limit of 3")),
    "not-toml": ("[grid\n", ("not valid TOML",)),
}


@pytest.mark.parametrize("command", ["plan", "run", "run-headless"])
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_sweep_file(case: str, command: str, env: Env,
                        capsys: pytest.CaptureFixture[str]) -> None:
    text, needles = BAD_FILES[case]
    f = env.write(text)
    before = fingerprint(env.db)
    argv = ["sweep", "plan", f] if command == "plan" else \
        ["sweep", "run", f, *(["--headless"] if command == "run-headless" else [])]
    code, out, err = call(env, argv, capsys)
    assert code == 2, (out, err)
    assert_one_line(err, *needles)
    assert out == ""
    assert fingerprint(env.db) == before
    assert env.supervisor_calls == []


@pytest.mark.parametrize(("argv", "needles"), [
    (["sweep", "plan", "nope.toml"], ("FILE", "nope.toml", "quick")),
    (["sweep", "show", "7"], ("no sweep '7'", "mfm sweep list")),
    (["sweep", "show", "nope"], ("no sweep 'nope'",)),
    (["sweep", "show", "99999999999999999999"], ("no sweep",)),
    (["sweep", "show", "\u00b2"], ("no sweep '\u00b2'",)),
    (["sweep", "show", "-1"], ("'-1'",)),
    (["sweep", "cancel", "7"], ("no sweep '7'",)),
    (["sweep", "resume", "7"], ("no sweep '7'",)),
    (["sweep", "export", "7", "--format", "csv"], ("no sweep '7'",)),
    (["sweep", "export", "1", "--format", "xml"], ("--format",)),
    (["sweep", "run", "tiny.toml", "--headless", "--slot", "gpu1"], ("--slot",)),
    (["sweep", "run", "tiny.toml", "--name", "a\nb"], ("--name", "\\n")),
    (["sweep", "run", "tiny.toml", "--slot", "gpu7"], ("gpu7",)),
    (["sweep", "run", "tiny.toml", "--max-cells", "0"], ("--max-cells",)),
])
def test_bad_flags_and_ids(argv: list[str], needles: tuple[str, ...], env: Env,
                           capsys: pytest.CaptureFixture[str]) -> None:
    env.write(sweep_file())
    before = fingerprint(env.db)
    code, out, err = call(env, argv, capsys)
    assert code == 2, (out, err)
    assert_one_line(err, *needles)
    assert fingerprint(env.db) == before
    assert env.supervisor_calls == []


# -- headless: train every cell here, then read the table ----------------------------------------

def _rows_of_table(out: str, arms: list[str]) -> dict[str, str]:
    rows = {}
    for line in out.splitlines():
        for arm in arms:
            if line.strip("│┃ ").startswith(arm + " ") and "│" in line:
                rows[arm] = line
    return rows


def test_headless_sweep_end_to_end(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    f = env.write(sweep_file())
    code, out, err = call(env, ["sweep", "run", f, "--headless"], capsys)
    assert code == 0, err[-3000:]
    assert "sweep 1 tiny: 4 cells in 2 arms; 4 to run" in err
    rows = _rows_of_table(out, ["ce", "balanced_softmax"])
    assert set(rows) == {"ce", "balanced_softmax"}
    assert all("2/2" in r and "±" in r for r in rows.values())
    assert env.supervisor_calls == []

    # every cell linked to its own completed run, which records the code version
    cells = env.cells(1)
    assert [(c.arm, c.seed) for c in cells] == [("ce", 0), ("ce", 1),
                                                ("balanced_softmax", 0), ("balanced_softmax", 1)]
    assert all(c.run is not None and c.run.status == "completed" for c in cells)
    assert len({c.run.id for c in cells}) == 4
    assert all(config_hash(c.run.config) == c.config_hash for c in cells)
    assert all(c.run.code_version for c in cells)
    assert len(env.runs()) == 4

    # show: table, markdown, csv, json, sort, per-class
    code, out, err = call(env, ["sweep", "show", "1"], capsys)
    assert code == 0, err
    assert set(_rows_of_table(out, ["ce", "balanced_softmax"])) == {"ce", "balanced_softmax"}
    assert "mean ± std" in out

    code, out, err = call(env, ["sweep", "show", "tiny", "--markdown"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| arm |") and lines[1].startswith("|---")
    assert lines[2].startswith("| ce | 2/2 | ") and " ± " in lines[2]
    assert lines[3].startswith("| balanced_softmax | 2/2 | ")

    code, out, err = call(env, ["sweep", "show", "1", "--csv"], capsys)
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert [(r["arm"], r["cells"], r["finished"]) for r in table] == [
        ("ce", "2", "2"), ("balanced_softmax", "2", "2")]
    assert all(0.0 <= float(r["acc_mean"]) <= 1.0 and r["acc_std"] != "" for r in table)

    code, out, err = call(env, ["sweep", "show", "1", "--json"], capsys)
    assert code == 0, err
    data = strict_json(out)
    assert data["sweep"] == {"id": 1, "name": "tiny", "cells": 4, "statuses": {"completed": 4}}
    assert [(a["arm"], a["cells"], a["finished"]) for a in data["arms"]] == [
        ("ce", 2, 2), ("balanced_softmax", 2, 2)]
    for a in data["arms"]:
        assert a["acc"]["n"] == 2 and a["acc"]["std"] >= 0
        assert a["val_acc"] is None  # no validation split held out
    acc = {a["arm"]: a["acc"]["mean"] for a in data["arms"]}
    by_csv = {r["arm"]: float(r["acc_mean"]) for r in table}
    assert by_csv == pytest.approx(acc, rel=1e-5)

    code, out, err = call(env, ["sweep", "show", "1", "--json", "--sort", "acc"], capsys)
    assert code == 0, err
    sorted_arms = [a["arm"] for a in strict_json(out)["arms"]]
    assert sorted_arms == sorted(acc, key=lambda arm: -acc[arm])
    code, out, err = call(env, ["sweep", "show", "1", "--markdown", "--sort", "acc"], capsys)
    assert code == 0, err
    assert [line.split("|")[1].strip() for line in out.strip().splitlines()[2:]] == sorted_arms
    code, out, err = call(env, ["sweep", "show", "1", "--sort", "nope"], capsys)
    assert code == 2
    assert_one_line(err, "--sort", "acc")

    code, out, err = call(env, ["sweep", "show", "1", "--per-class", "ce"], capsys)
    assert code == 0, err
    assert "per-class" in out and out.count("±") >= 10
    code, out, err = call(env, ["sweep", "show", "1", "--per-class", "ce", "--per-class",
                                "balanced_softmax", "--json"], capsys)
    assert code == 0, err
    per = strict_json(out)
    assert set(per) == {"ce", "balanced_softmax"}
    assert len(per["ce"]) == 10 and all(r["seeds"] == 2 for r in per["ce"])
    trains = [r["train"] for r in per["ce"]]
    assert trains == sorted(trains, reverse=True) and trains[0] > trains[-1]  # head to tail
    code, out, err = call(env, ["sweep", "show", "1", "--per-class", "mfm"], capsys)
    assert code == 2
    assert_one_line(err, "--per-class", "'mfm'", "ce; balanced_softmax")

    # the same file again: every cell is reused (same code version), nothing new trains
    code, out, err = call(env, ["sweep", "plan", f], capsys)
    assert code == 0, err
    assert "4 reused" in out and "stale" not in out and " new " not in out
    code, out, err = call(env, ["sweep", "run", f, "--headless"], capsys)
    assert code == 0, err[-3000:]
    assert "4 cells in 2 arms; 4 reused; nothing to run" in err
    assert len(env.runs()) == 4

    # one more seed: only its two cells train
    env.write(sweep_file(seeds="[0, 1, 2]"))
    code, out, err = call(env, ["sweep", "run", f, "--headless"], capsys)
    assert code == 0, err[-3000:]
    assert "6 cells in 2 arms; 4 reused; 2 to run" in err
    assert len(env.runs()) == 6
    cells = env.cells(1)
    assert [(c.arm, c.seed) for c in cells] == [
        ("ce", 0), ("ce", 1), ("ce", 2), ("balanced_softmax", 0), ("balanced_softmax", 1),
        ("balanced_softmax", 2)]
    assert all(c.run is not None and c.run.status == "completed" for c in cells)
    rows = _rows_of_table(out, ["ce", "balanced_softmax"])
    assert all("3/3" in r for r in rows.values())

    # list
    code, out, err = call(env, ["sweep", "list"], capsys)
    assert code == 0, err
    assert "tiny" in out and any(line.split("│")[3].strip() == "6" for line in
                                 out.splitlines() if "tiny" in line)
    code, out, err = call(env, ["sweep", "list", "--json"], capsys)
    assert code == 0, err
    assert [(s["id"], s["name"], s["cells"], s["statuses"]) for s in strict_json(out)] == [
        (1, "tiny", 6, {"completed": 6})]

    # export
    code, out, err = call(env, ["sweep", "export", "1", "--format", "json"], capsys)
    assert code == 0, err
    exported = strict_json(out)
    assert exported["sweep"]["name"] == "tiny" and "seed = [0, 1, 2]" in exported["sweep"]["file"]
    assert len(exported["cells"]) == 6
    assert {c["run"]["status"] for c in exported["cells"]} == {"completed"}
    assert all(c["run"]["config"]["seed"] == c["seed"] for c in exported["cells"])
    code, out, err = call(env, ["sweep", "export", "tiny", "--format", "csv"], capsys)
    assert code == 0, err
    rows_csv = list(csv.DictReader(io.StringIO(out)))
    assert [(r["cell"], r["arm"], r["seed"], r["status"]) for r in rows_csv] == [
        (str(i + 1), c.arm, str(c.seed), "completed") for i, c in enumerate(cells)]
    assert all(json.loads(r["config"])["method"]["name"] == r["arm"] for r in rows_csv)
    code, out, err = call(env, ["sweep", "export", "1", "--format", "csv", "-o", "s.csv"],
                          capsys)
    assert code == 0, err
    assert (env.tmp / "s.csv").read_text(encoding="utf-8").splitlines()[0].startswith("cell,")


# -- queued: recorded, linked, cancelled, resumed -----------------------------------------------

def test_queued_sweep_then_cancel_resume_and_finish_headless(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    f = env.write(sweep_file())
    code, out, err = call(env, ["sweep", "run", f, "--name", "queued-study"], capsys)
    assert code == 0, err
    assert out.strip() == "1"
    assert "queued 4 new and resumed 0 cells" in err
    assert env.supervisor_calls == [(str(env.db), env.tmp / "runs")]
    cells = env.cells(1)
    assert all(c.run is not None and c.run.status == "queued" for c in cells)
    assert [c.run.name for c in cells] == [
        "queued-study · ce · seed 0", "queued-study · ce · seed 1",
        "queued-study · balanced_softmax · seed 0", "queued-study · balanced_softmax · seed 1"]
    assert all(c.run.code_version and config_hash(c.run.config) == c.config_hash for c in cells)
    assert all(c.run.checkpoint_dir == str(env.tmp / "runs" / str(c.run.id)) for c in cells)

    # planned again while queued: every cell is active, nothing more to queue
    code, out, err = call(env, ["sweep", "plan", f], capsys)
    assert code == 0, err
    assert "4 already queued or running" in out
    code, out, err = call(env, ["sweep", "run", f, "--name", "queued-study"], capsys)
    assert code == 0, err
    assert len(env.runs()) == 4 and len(env.supervisor_calls) == 1

    code, out, err = call(env, ["sweep", "show", "queued-study", "--json"], capsys)
    assert strict_json(out)["sweep"]["statuses"] == {"queued": 4}

    code, out, err = call(env, ["sweep", "cancel", "queued-study"], capsys)
    assert code == 0, err
    assert out.strip() == "sweep 1: cancel sent to 4 runs"
    assert {c.run.status for c in env.cells(1)} == {"cancelled"}
    code, out, err = call(env, ["sweep", "cancel", "1"], capsys)
    assert out.strip() == "sweep 1: cancel sent to 0 runs"

    # one run failed instead of being cancelled: resume re-queues it with the cancelled ones
    failed_id = env.cells(1)[0].run.id
    with Database(str(env.db)) as db:
        repo.update_run(db, failed_id, status="failed", error="boom")
    code, out, err = call(env, ["sweep", "resume", "1"], capsys)
    assert code == 0, err
    assert out.strip() == "sweep 1: 4 runs queued again"
    assert len(env.supervisor_calls) == 2
    after = env.cells(1)
    assert {c.run.status for c in after} == {"queued"}
    assert {c.run.id for c in after} == {c.run.id for c in cells}  # the same runs, not new ones
    assert all(c.run.attempt == 1 and c.run.resume_requested for c in after)

    code, out, err = call(env, ["sweep", "cancel", "1"], capsys)
    assert out.strip() == "sweep 1: cancel sent to 4 runs"
    code, out, err = call(env, ["sweep", "list", "--json"], capsys)
    assert strict_json(out)[0]["statuses"] == {"cancelled": 4}

    # queued again by running the file: the cancelled runs are resumed, not duplicated
    code, out, err = call(env, ["sweep", "run", f, "--name", "queued-study"], capsys)
    assert code == 0, err
    assert "queued 0 new and resumed 4 cells" in err
    assert {c.run.status for c in env.cells(1)} == {"queued"} and len(env.runs()) == 4
    assert len(env.supervisor_calls) == 3
    call(env, ["sweep", "cancel", "1"], capsys)

    # and finished here: the cancelled cells (never started) train in this process
    code, out, err = call(env, ["sweep", "run", f, "--name", "queued-study", "--headless"],
                          capsys)
    assert code == 0, err[-3000:]
    assert "4 to resume" in err
    final = env.cells(1)
    assert {c.run.status for c in final} == {"completed"}
    assert {c.run.id for c in final} == {c.run.id for c in cells}
    assert len(env.runs()) == 4
    assert all("2/2" in r for r in _rows_of_table(out, ["ce", "balanced_softmax"]).values())
    assert len(env.supervisor_calls) == 3  # --headless starts none
    # nothing is left queued for a supervisor to pick up
    with Database(str(env.db)) as db:
        assert queue.queue_positions(db) == {}


def test_sweep_help(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("plan", "run", "list", "show", "cancel", "resume", "export"):
        code, out, err = call(env, ["sweep", sub, "--help"], capsys)
        assert code == 0 and err == ""
        assert out.startswith(f"Usage: mfm sweep {sub}") and "Example" in out


def test_a_sweep_named_with_digits_is_found_by_name(env: Env,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    f = env.write(sweep_file(seeds="[0]", methods='["ce"]'))
    code, out, err = call(env, ["sweep", "run", f, "--name", "2024"], capsys)
    assert code == 0 and out.strip() == "1", err
    code, out, err = call(env, ["sweep", "show", "2024", "--json"], capsys)
    assert code == 0, err
    assert strict_json(out)["sweep"]["name"] == "2024"
    code, out, err = call(env, ["sweep", "cancel", "2024"], capsys)
    assert out.strip() == "sweep 1: cancel sent to 1 runs"
    assert {c.run.status for c in env.cells(1)} == {"cancelled"}


def test_sweep_sent_to_slurm_asks_for_the_slurm_slot_and_starts_no_local_supervisor(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    f = env.write(sweep_file())
    code, out, err = call(env, ["sweep", "run", f, "--executor", "slurm"], capsys)
    assert code == 0, err
    assert "for Slurm" in err and env.supervisor_calls == []
    cells = env.cells(int(out.strip()))
    assert cells and all(c.run is not None and c.run.want_slot == "slurm" for c in cells)
    for bad, needle in ((["--executor", "slurm", "--headless"], "--executor"),
                        (["--executor", "slurm", "--slot", "gpu1"], "--slot")):
        code, out, err = call(env, ["sweep", "run", f, "--name", "other", *bad], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
