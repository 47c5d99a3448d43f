"""``train.init_from`` refused before anything is recorded: through ``mfm``'s real entry point
(in this process) against a real SQLite file, queued and ``--headless`` alike, each refusal is
exit code 2, one line naming ``train.init_from``, and the records byte-for-byte as they were.
What passes: a completed parent with a sound checkpoint, and (queued only) a live parent the
child waits for. ``mfm show`` and ``--json`` name a run's parent and children."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_checkpoint import write_checkpoint
from proc_helpers import fingerprint

from mfm.cli.main import main
from mfm.config import config_to_dict, load_config
from mfm.lineage import COSINE_METHODS, classifier_kind
from mfm.store import Database, queue, repo

TINY = ["model.name=resnet_tiny", "device=cpu", "train.epochs=1", "method.name=ce"]
DIGITS_COUNTS = {"classes": [str(i) for i in range(10)], "train": [30] * 10,
                 "meta": [10] * 10, "test": [50] * 10}


def _parent(db: Database, runs: Path, *, sets: tuple[str, ...] = (), status: str = "completed",
            name: str | None = None, counts: dict | None = DIGITS_COUNTS,
            files: tuple[str, ...] = ("last.pt", "best.pt")) -> int:
    """A run as a finished one leaves it: its resolved config, class counts, checkpoint files
    (readable to the torch-free check), in ``status``."""
    cfg = load_config(None, [*TINY, *sets])
    rid = queue.enqueue_run(db, config=config_to_dict(cfg), epochs_total=1, name=name)
    repo.update_run(db, rid, checkpoint_dir=str(runs / str(rid)))
    if counts is not None:
        repo.update_run(db, rid, class_counts=counts)
    for f in files:
        write_checkpoint(runs / str(rid) / f, {"model": {}})
    if status != "queued":
        queue.transition(db, rid, "starting", allowed_from=("queued",))
        if status != "starting":
            queue.transition(db, rid, "running", allowed_from=("starting",))
            if status != "running":
                queue.transition(db, rid, status)
    return rid


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.delenv("MFM_DB", raising=False)
    runs = tmp_path / "runs"
    monkeypatch.setenv("MFM_RUNS_DIR", str(runs))
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    db_file = tmp_path / "experiments.db"
    ids = {}
    with Database(str(db_file)) as db:
        ids["ok"] = _parent(db, runs, name="stage1")
        ids["failed"] = _parent(db, runs, status="failed")
        ids["cancelled"] = _parent(db, runs, status="cancelled")
        ids["queued"] = _parent(db, runs, status="queued", counts=None, files=())
        ids["running"] = _parent(db, runs, status="running", counts=None, files=())
        ids["no_files"] = _parent(db, runs, files=())
        ids["no_best"] = _parent(db, runs, files=("last.pt",))
        ids["resnet8"] = _parent(db, runs, sets=("model.name=resnet8",))
        ids["ldam"] = _parent(db, runs, sets=("method.name=ldam_drw",))
        ids["three"] = _parent(db, runs, counts={**DIGITS_COUNTS, "train": [5, 3, 2]})
        ids["damaged"] = _parent(db, runs)
    damaged = runs / str(ids["damaged"]) / "last.pt"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    return {"db": db_file, "runs": runs, **ids}


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def _run(env: dict, headless: bool, *sets: str) -> list[str]:
    argv = ["run", *(["--headless"] if headless else [])]
    for s in (*TINY, *sets):
        argv += ["--set", s]
    return [*argv, "--db", str(env["db"])]


def _count(env: dict) -> int:
    with Database(str(env["db"])) as db:
        return len(repo.list_runs(db))


# (which parent, extra settings, words the line holds; `{id}` is the parent's id)
REFUSALS = [
    ("missing", (), ("no run 999 in the records",)),
    ("failed", (), ("run {id} is failed, not completed", "mfm resume {id}")),
    ("cancelled", (), ("run {id} is cancelled, not completed",)),
    ("no_files", (), ("run {id}'s last.pt", "is missing")),
    ("no_best", ("train.init_checkpoint=best",), ("run {id}'s best.pt", "is missing")),
    ("damaged", (), ("run {id}'s last.pt", "is truncated")),
    ("resnet8", (), ("run {id} is a resnet8, this run builds a resnet_tiny (model.name)",)),
    ("ldam", (), ("run {id} has a cosine classifier (ldam_drw), this run builds a linear one",
                  "model.classifier=cosine")),
    ("ok", ("method.name=ldam_drw",), ("run {id} has a linear classifier (ce), this run builds "
                                       "a cosine one",)),
    ("three", (), ("run {id} was trained on 3 classes, this run's data has 10",)),
    ("arm", (), ("'arm:stage1' names a sweep arm", "only inside a sweep file")),
]


@pytest.mark.parametrize("headless", [False, True], ids=["queued", "headless"])
@pytest.mark.parametrize(("which", "sets", "needles"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_a_bad_parent_is_refused_in_one_line_and_nothing_is_recorded(
        env, capsys, which, sets, needles, headless):
    ref = {"missing": "999", "arm": "arm:stage1"}.get(which) or str(env[which])
    before, runs = fingerprint(env["db"]), _count(env)
    code, out, err = call(_run(env, headless, f"train.init_from={ref}", *sets), capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and out == "" and len(lines) == 1, (code, out, err)
    assert lines[0].startswith("error: train.init_from: "), lines[0]
    for needle in needles:
        assert needle.format(id=ref) in lines[0], (needle, lines[0])
    assert "Traceback" not in err
    assert fingerprint(env["db"]) == before and _count(env) == runs


@pytest.mark.parametrize("which", ["queued", "running"])
def test_a_live_parent_is_waited_for_when_queued_and_refused_here(env, capsys, which,
                                                                   monkeypatch):
    """Queued, the child waits for its parent in the queue (no supervisor is started here);
    --headless trains now, so its parent must be completed."""
    parent = env[which]
    before, runs = fingerprint(env["db"]), _count(env)
    code, _, err = call(_run(env, True, f"train.init_from={parent}"), capsys)
    assert code == 2 and err.strip() == (
        f"error: train.init_from: run {parent} is {which}, not completed: resume it first "
        f"(mfm resume {parent}) or start from a completed run")
    assert fingerprint(env["db"]) == before and _count(env) == runs
    from mfm.runner import control

    monkeypatch.setattr(control.RunControl, "serve_for",
                        lambda self, *a: control.SupervisorNote("none"))
    code, out, err = call(_run(env, False, f"train.init_from={parent}"), capsys)
    assert code == 0, err
    child = int(out.strip())
    with Database(str(env["db"])) as db:
        rec = repo.get_run(db, child)
        assert rec.status == "queued" and rec.parent_id == parent
        assert [k.id for k in repo.children(db, parent)] == [child]


def test_a_sound_parent_is_queued_with_its_id(env, capsys, monkeypatch):
    from mfm.runner import control

    monkeypatch.setattr(control.RunControl, "serve_for",
                        lambda self, *a: control.SupervisorNote("none"))
    parent = env["ok"]
    code, out, err = call(_run(env, False, f"train.init_from={parent}",
                               "train.trainable=classifier", "train.init_checkpoint=best"),
                          capsys)
    assert code == 0, err
    child = int(out.strip())
    with Database(str(env["db"])) as db:
        rec = repo.get_run(db, child)
    assert rec.parent_id == parent and rec.config["train"]["init_checkpoint"] == "best"

    code, out, _ = call(["show", str(child), "--db", str(env["db"])], capsys)
    assert code == 0
    assert f"parent run {parent} stage1 (completed), from its best.pt" in out
    code, out, _ = call(["show", str(parent), "--db", str(env["db"])], capsys)
    assert code == 0 and f"children {child} (queued)" in out
    code, out, _ = call(["show", str(parent), "--json", "--db", str(env["db"])], capsys)
    doc = json.loads(out)
    assert doc["children"] == [child] and doc["run"]["parent_id"] is None
    code, out, _ = call(["show", str(child), "--json", "--db", str(env["db"])], capsys)
    doc = json.loads(out)
    assert doc["children"] == [] and doc["run"]["parent_id"] == parent


def test_show_names_a_parent_that_is_gone(env, capsys, monkeypatch):
    with Database(str(env["db"])) as db:
        child = repo.create_run(db, config={"train": {"init_from": "998",
                                                      "init_checkpoint": "last"}},
                                epochs_total=1)
    code, out, _ = call(["show", str(child), "--db", str(env["db"])], capsys)
    assert code == 0 and "parent run 998 (no longer in the records), from its last.pt" in out


def test_the_classifier_rule_follows_the_methods():
    """mfm.lineage.classifier_kind (torch-free) says what the engine builds for auto: each
    method's own ``classifier`` attribute."""
    from mfm.config import METHOD_NAMES
    from mfm.methods.registry import _METHODS, list_methods

    assert set(list_methods()) == set(METHOD_NAMES)
    for name in METHOD_NAMES:
        own = _METHODS[name].classifier
        assert classifier_kind(name) == own, name
        assert (name in COSINE_METHODS) == (own == "cosine")
    assert classifier_kind("ldam_drw", "linear") == "linear"
    assert classifier_kind("ce", "cosine") == "cosine"
