"""Run control has one home (mfm.runner.control): the same action gives the same outcome from
``mfm``, ``mfm sweep`` and mfm-tui's services, all three driven here against one real SQLite
file. No supervisor is started: the CLI's detached start is replaced by a stub that records
its calls, and the TUI's services are built with ``start_supervisor=False``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fake_checkpoint import write_checkpoint
from proc_helpers import fingerprint

from mfm.cli.main import cli
from mfm.config import config_to_dict, load_config
from mfm.runner.control import CheckpointGone, NotCancellable, RunControl
from mfm.store import Database, queue, repo
from mfm.store import sweeps as sweep_store
from mfm_tui.services import ServiceError, Services

TINY = ["model.name=resnet_tiny", "train.epochs=3", "device=cpu"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.setenv("MFM_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    import mfm.runner.launch as launch

    started: list[str] = []

    def stub(db_target: str, runs_root: Path, args: list[str]) -> int:
        started.append(db_target)
        return 4242

    monkeypatch.setattr(launch, "start_detached_supervisor", stub)
    db_path = tmp_path / "experiments.db"
    db = Database(str(db_path))
    services = Services(str(db_path), runs_root=tmp_path / "runs", start_supervisor=False,
                        gpu_probe=list)
    yield db, db_path, services, started
    services.close()
    db.close()


def mfm(db_path: Path, *args: str):
    return CliRunner().invoke(cli, ["--db", str(db_path), *args])


def queued_run(db: Database) -> int:
    cfg = load_config(None, TINY)
    return queue.enqueue_run(db, config=config_to_dict(cfg), epochs_total=3)


def interrupted_run(db: Database, tmp_path: Path, *, status: str = "failed",
                    epochs: int = 1, checkpoint: bool = False) -> int:
    """A run that recorded ``epochs`` epochs and ended ``status``; its folder holds a
    ``last.pt`` only with ``checkpoint``."""
    run_id = queued_run(db)
    folder = tmp_path / "runs" / str(run_id)
    folder.mkdir(parents=True)
    if checkpoint:
        write_checkpoint(folder / "last.pt")
    repo.update_run(db, run_id, checkpoint_dir=str(folder))
    queue.transition(db, run_id, "running", allowed_from=("queued",))
    for epoch in range(epochs):
        repo.log_epoch(db, run_id, epoch, {"acc": 0.5}, [0.5] * 10)
    queue.transition(db, run_id, status, error="boom")
    return run_id


def digest(path: Path) -> tuple[str | None, str | None]:
    return fingerprint(path)


def make_sweep(db: Database, run_ids: list[int]) -> int:
    """A sweep whose cells are answered by ``run_ids``, recorded as ``mfm sweep run`` does."""
    from mfm.sweeps.plan import plan_sweep
    from mfm.sweeps.queueing import record_sweep
    from mfm.sweeps.spec import parse_sweep

    spec = parse_sweep({"name": "study", "model": {"name": "resnet_tiny"},
                        "train": {"epochs": 3}, "device": "cpu",
                        "grid": {"seed": list(range(len(run_ids)))}})
    plan = plan_sweep(db, spec, code_version=None)
    rec = record_sweep(db, plan, code_version=None)
    for cell, run_id in zip(plan.cells, run_ids, strict=True):
        sweep_store.link_cell(db, rec.id, cell.config_hash, run_id)
    return rec.id


# -- cancel -----------------------------------------------------------------------------------

def test_cancel_of_a_queued_run_is_the_same_from_mfm_the_tui_and_mfm_sweep(store, tmp_path):
    db, db_path, services, _ = store
    a, b, c = queued_run(db), queued_run(db), queued_run(db)
    make_sweep(db, [c])
    res = mfm(db_path, "cancel", str(a))
    assert res.exit_code == 0 and res.output.strip() == f"run {a}: cancelled (it was queued)"
    assert services.cancel_run(b) == f"run {b} cancelled (it was queued)"
    res = mfm(db_path, "sweep", "cancel", "study")
    assert res.exit_code == 0 and "cancel sent to 1 runs" in res.output
    assert [repo.get_run(db, r).status for r in (a, b, c)] == ["cancelled"] * 3


def test_cancel_of_a_finished_run_is_refused_alike_and_changes_nothing(store, tmp_path):
    db, db_path, services, _ = store
    run_id = interrupted_run(db, tmp_path, status="failed")
    before = digest(db_path)
    res = mfm(db_path, "cancel", str(run_id))
    assert res.exit_code == 2
    assert res.output.strip() == (f"error: ID: run {run_id} is already failed; nothing to "
                                  "cancel")
    with pytest.raises(ServiceError) as said:
        services.cancel_run(run_id)
    assert str(said.value) == f"run {run_id} is already failed; nothing to cancel"
    with pytest.raises(NotCancellable) as typed:
        RunControl(db, db_target=str(db_path), runs_root=tmp_path / "runs").cancel([run_id])
    assert (typed.value.run_id, typed.value.status, typed.value.field) == (run_id, "failed",
                                                                          "run")
    assert digest(db_path) == before


# -- resume -----------------------------------------------------------------------------------

def test_resume_without_a_checkpoint_is_refused_by_all_three_and_changes_nothing(store,
                                                                                 tmp_path):
    db, db_path, services, started = store
    run_id = interrupted_run(db, tmp_path, epochs=2)
    make_sweep(db, [run_id])
    before = digest(db_path)
    ckpt = tmp_path / "runs" / str(run_id) / "last.pt"
    words = (f"run {run_id} cannot resume: its checkpoint ({ckpt}) is missing, and training "
             f"from scratch would overwrite its 2 recorded epoch(s); start a new run instead")
    res = mfm(db_path, "resume", str(run_id))
    assert res.exit_code == 2 and res.output.strip() == f"error: ID: {words}"
    with pytest.raises(ServiceError) as said:  # the TUI used to queue it, to fail later
        services.resume_run(run_id)
    assert str(said.value) == words
    res = mfm(db_path, "sweep", "resume", "study")
    assert res.exit_code == 0
    assert f"run {run_id}: left as failed: {words}" in res.output
    assert "0 runs queued again" in res.output
    assert digest(db_path) == before
    assert repo.get_run(db, run_id).attempt == 0 and started == []
    with pytest.raises(CheckpointGone) as typed:
        RunControl(db, db_target=str(db_path), runs_root=tmp_path / "runs").resume(run_id)
    assert (typed.value.path, typed.value.epochs) == (str(ckpt), 2)


def test_resume_with_a_checkpoint_queues_it_alike_and_starts_a_supervisor(store, tmp_path):
    db, db_path, services, started = store
    a, b, c = (interrupted_run(db, tmp_path, status=s, checkpoint=True)
               for s in ("failed", "cancelled", "lost"))
    make_sweep(db, [c])
    res = mfm(db_path, "resume", str(a))
    assert res.exit_code == 0
    assert res.output.strip() == f"run {a}: queued to resume after epoch 1/3 (attempt 1)"
    assert len(started) == 1  # the CLI starts one on demand
    said = services.resume_run(b)  # built with start_supervisor=False: says none serves
    assert said.startswith(f"run {b} queued to resume after epoch 1/3 (attempt 1; ")
    assert "no supervisor serves this database" in said
    res = mfm(db_path, "sweep", "resume", "study")
    assert res.exit_code == 0 and "1 runs queued again" in res.output
    assert len(started) == 2  # the same start, through the same path
    for run_id in (a, b, c):
        rec = repo.get_run(db, run_id)
        assert (rec.status, rec.attempt) == ("queued", 1)


def test_resume_of_an_unknown_or_completed_run_is_refused_alike(store, tmp_path):
    db, db_path, services, _ = store
    res = mfm(db_path, "resume", "99")
    assert res.exit_code == 2
    assert res.output.strip() == f"error: ID: no run 99 in {db_path} (see mfm runs)"
    with pytest.raises(ServiceError) as said:
        services.resume_run(99)
    assert str(said.value) == f"no run 99 in {db_path} (see mfm runs)"
    done = interrupted_run(db, tmp_path, status="completed", checkpoint=True)
    res = mfm(db_path, "resume", str(done))
    assert res.exit_code == 2 and "it finished; nothing to resume" in res.output
    with pytest.raises(ServiceError, match="it finished; nothing to resume"):
        services.resume_run(done)


# -- references -------------------------------------------------------------------------------

@pytest.mark.parametrize("ref", ["x@\u00b2", "x@0", "x@", "@3", "x@1.5", "x@99999999999"])
def test_a_bad_config_reference_is_one_line_from_mfm_run_and_from_a_sweep_file(store, tmp_path,
                                                                               ref):
    db, db_path, _, _ = store
    before = digest(db_path)
    res = mfm(db_path, "run", "--config-name", ref)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: --config-name: expected NAME or NAME@VERSION"), res.output
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text(f'name = "s"\nconfig = "{ref}"\n[grid]\nseed = [0]\n')
    res = mfm(db_path, "sweep", "plan", str(sweep_file))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: config: expected NAME or NAME@VERSION"), res.output
    assert digest(db_path) == before


def test_a_named_config_resolves_the_same_for_mfm_run_and_a_sweep(store, tmp_path):
    db, db_path, _, _ = store
    repo.save_config(db, "fast", {"train": {"epochs": 2}})
    repo.save_config(db, "fast", {"train": {"epochs": 4}})
    control = RunControl(db, db_target=str(db_path), runs_root=tmp_path / "runs")
    assert control.named_config("fast").version == 2
    assert control.named_config("fast@1").config == {"train": {"epochs": 2}}
    from mfm.sweeps.plan import resolve_base
    from mfm.sweeps.spec import parse_sweep

    spec = parse_sweep({"name": "s", "config": "fast@1", "grid": {"seed": [0]}})
    assert resolve_base(db, spec)["train"]["epochs"] == 2


# -- logs -------------------------------------------------------------------------------------

def test_a_runs_log_path_is_the_same_for_mfm_logs_and_the_tui(store, tmp_path):
    db, db_path, services, _ = store
    run_id = queued_run(db)
    log = tmp_path / "runs" / str(run_id) / "run.log"
    log.parent.mkdir(parents=True)
    log.write_text("epoch 1 done\n")
    res = mfm(db_path, "logs", str(run_id))
    assert res.exit_code == 0 and res.output == "epoch 1 done\n"
    lines, _ = services.read_log(repo.get_run(db, run_id))
    assert lines == ["epoch 1 done"]


# -- damaged checkpoints ----------------------------------------------------------------------

def _damage(path: Path, how: str) -> None:
    import os

    import torch

    if how == "truncated":
        torch.save({"epoch": 0, "w": torch.ones(1000)}, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "code":
        class Payload:
            def __reduce__(self):
                return (os.system, ("touch pwned",))

        torch.save({"epoch": 0, "x": Payload()}, path)


@pytest.mark.parametrize(("how", "why"), [("truncated", "truncated"), ("empty", "empty"),
                                          ("code", "it would run code when loaded")])
def test_a_damaged_checkpoint_is_refused_in_one_line_by_every_front_end(store, tmp_path, how,
                                                                       why):
    db, db_path, services, started = store
    run_id = interrupted_run(db, tmp_path, status="cancelled", checkpoint=True)
    make_sweep(db, [run_id])
    ckpt = tmp_path / "runs" / str(run_id) / "last.pt"
    _damage(ckpt, how)
    before = digest(db_path)
    res = mfm(db_path, "resume", str(run_id))
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: ID: run {run_id} cannot resume: {ckpt} is damaged ({why}")
    assert "weights_only" not in res.output
    with pytest.raises(ServiceError, match=f"is damaged \\({why}"):
        services.resume_run(run_id)
    res = mfm(db_path, "sweep", "resume", "study")
    assert f"is damaged ({why}" in res.output and "0 runs queued again" in res.output
    assert digest(db_path) == before and started == []
    assert not (tmp_path / "pwned").exists()


def test_the_engine_refuses_a_damaged_checkpoint_in_one_line_without_torchs_advice(tmp_path):
    from mfm.engine.checkpoint import CheckpointDamaged, load_checkpoint

    for how in ("truncated", "empty", "code"):
        path = tmp_path / f"{how}.pt"
        _damage(path, how)
        with pytest.raises(CheckpointDamaged) as e:
            load_checkpoint(path)
        assert "\n" not in str(e.value) and "weights_only" not in str(e.value)
    assert not (tmp_path / "pwned").exists()


# -- a copied database ------------------------------------------------------------------------

def test_a_copy_of_the_records_never_resumes_into_the_originals_folder(store, tmp_path):
    import shutil

    from mfm import runfiles
    from mfm.runner.execute import execute_run

    db, db_path, services, started = store
    run_id = interrupted_run(db, tmp_path, status="cancelled", checkpoint=True)
    folder = tmp_path / "runs" / str(run_id)
    runfiles.claim_folder(folder, db.identity)  # as the run process marked it
    copy = tmp_path / "copy" / "experiments.db"
    copy.parent.mkdir()
    db.close()
    shutil.copy(db_path, copy)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    copy_before = digest(copy)
    res = mfm(copy, "resume", str(run_id))
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"error: ID: run {run_id} cannot resume here: its folder {folder} belongs to the "
        f"records at {db_path} (these records are a copy); resume it there, or copy the "
        f"folder and point MFM_RUNS_DIR at the copy")
    assert digest(copy) == copy_before
    # the run process refuses too (a resume queued before this rule, a hand-made record)
    with Database(str(copy)) as other:
        queue.request_resume(other, run_id, to="created")
        outcome = execute_run(other, run_id, checkpoint_dir=folder, resume=True)
        assert outcome.status == "failed" and "belongs to the records at" in outcome.reason
        assert repo.get_run(other, run_id).status == "failed"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # the original resumes as before
    with Database(str(db_path)) as original:
        done = RunControl(original, db_target=str(db_path),
                          runs_root=tmp_path / "runs", start_supervisor=False).resume(run_id)
    assert done.after_epoch == 1
