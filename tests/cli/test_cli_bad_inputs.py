"""The bad-input battery: every case goes through ``mfm``'s real entry point (``main``, the one
the console script calls) against a real SQLite file, and must end with

- the expected exit code (2 for bad input, 1 for a fault or a failed run),
- exactly one line on stderr, naming what was wrong, and no traceback,
- the records byte-for-byte as they were (or exactly the intended change).

Cases are data: CLI flags, TOML files, names, database files, checkpoints, data folders, a full
disk (a small tmpfs, where this machine lets us mount one) and a diverging run.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from proc_helpers import fingerprint

from mfm.cli.main import main
from mfm.store import Database, queue, repo

TINY = ("--set", "model.name=resnet_tiny", "--set", "train.epochs=1", "--set", "device=cpu",
        "--set", "train.batch_size=64")


# -- the records every case runs against -------------------------------------------------------

def _seed(db_file: Path, runs_dir: Path) -> None:
    """Three runs: 1 completed (with metrics), 2 failed, 3 cancelled (no checkpoint on disk)."""
    cfg = {"method": {"name": "ce"}, "data": {"name": "digits", "imbalance_factor": 10.0},
           "train": {"epochs": 2}}
    with Database(str(db_file)) as db:
        one = repo.create_run(db, config=cfg, epochs_total=2, name="one", status="queued")
        repo.update_run(db, one, checkpoint_dir=str(runs_dir / "1"),
                        class_counts={"classes": ["a", "b"], "train": [10, 1], "meta": [1, 1],
                                      "test": [5, 5]})
        for ep in (0, 1):
            repo.log_epoch(db, one, ep, {"acc": 0.5 + ep / 10, "train_loss": 1.0 - ep / 10},
                           [0.9, 0.1 + ep / 10])
        repo.update_run(db, one, summary={"final": {"acc": 0.6}, "best": {"acc": 0.6}})
        queue.transition(db, one, "starting", allowed_from=("queued",))
        queue.transition(db, one, "running")
        queue.transition(db, one, "completed")
        two = repo.create_run(db, config=cfg, epochs_total=2, name="two", status="queued")
        queue.transition(db, two, "starting", allowed_from=("queued",))
        queue.transition(db, two, "running")
        queue.transition(db, two, "failed", error="boom")
        three = repo.create_run(db, config=cfg, epochs_total=2, name="three", status="queued")
        repo.update_run(db, three, checkpoint_dir=str(runs_dir / "3"))
        repo.log_epoch(db, three, 0, {"acc": 0.4, "train_loss": 1.2}, [0.8, 0.0])
        queue.transition(db, three, "starting", allowed_from=("queued",))
        queue.transition(db, three, "running")
        queue.transition(db, three, "cancelled")
    (runs_dir / "3").mkdir(parents=True)  # its folder exists; its last.pt does not


@dataclass
class Env:
    tmp: Path
    db: Path
    runs: Path
    extra_env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    monkeypatch.delenv("MFM_DB", raising=False)
    monkeypatch.delenv("MFM_DEBUG", raising=False)
    monkeypatch.setenv("MFM_LOG_DIR", str(tmp_path / "logs"))
    runs = tmp_path / "runs"
    monkeypatch.setenv("MFM_RUNS_DIR", str(runs))
    db = tmp_path / "experiments.db"
    _seed(db, runs)
    return Env(tmp_path, db, runs)


def call(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run mfm's entry point in this process; (exit code, stdout, stderr)."""
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err[:2000]}"
    line = lines[0]
    assert "Traceback" not in err
    assert line.startswith("error: "), line
    assert len(line) <= 2100, f"a {len(line)}-character line"
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"


# -- cases: flags, TOML, names -----------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    code: int | tuple[int, ...]
    needles: tuple[str, ...]
    setup: Callable[[Env], None] | None = None
    unchanged: bool = True


def _toml(text: str) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        (e.tmp / "bad.toml").write_text(text, encoding="utf-8")
    return write


def _bytes_file(name: str, data: bytes) -> Callable[[Env], None]:
    def write(e: Env) -> None:
        (e.tmp / name).write_bytes(data)
    return write


def run_args(*sets: str, headless: bool = True) -> tuple[str, ...]:
    out: list[str] = ["run"] + (["--headless"] if headless else []) + list(TINY)
    for s in sets:
        out += ["--set", s]
    return tuple(out)


BIG_LIST = ",".join(["0.5"] * 10_000)

FLAG_CASES = [
    Case("runs-limit-float", ("runs", "--limit", "1e20"), 2, ("--limit",)),
    Case("runs-limit-negative", ("runs", "--limit", "-1"), 2, ("--limit",)),
    Case("runs-status-unknown", ("runs", "--status", "done"), 2, ("--status", "completed")),
    Case("show-id-too-large", ("show", "99999999999999999999"), 2, ("no run",)),
    Case("show-id-zero", ("show", "0"), 2, ("no run 0",)),
    Case("show-id-text", ("show", "abc"), 2, ("ID",)),
    Case("show-vs-missing", ("show", "1", "--plot", "--vs", "42"), 2, ("no run 42",)),
    Case("export-format", ("export", "1", "--format", "xml"), 2, ("--format",)),
    Case("export-missing-folder", ("export", "1", "--format", "csv", "-o", "nope/x.csv"), 2,
         ("--output", "does not exist")),
    Case("export-onto-folder", ("export", "1", "--format", "csv", "-o", "."), 2,
         ("--output", "directory")),
    Case("export-id-too-large", ("export", "99999999999999999999", "--format", "json"), 2,
         ("no run",)),
    Case("cancel-unknown", ("cancel", "42"), 2, ("no run 42",)),
    Case("cancel-finished", ("cancel", "1"), 2, ("already completed",)),
    Case("resume-unknown", ("resume", "42"), 2, ("42",)),
    Case("resume-completed", ("resume", "1"), 2, ("completed",)),
    Case("resume-no-checkpoint", ("resume", "3"), 2, ("last.pt",)),
    Case("logs-unknown", ("logs", "42"), 2, ("no run 42",)),
    Case("logs-none-yet", ("logs", "2"), 2, ("no log",)),
    Case("unknown-command", ("trian",), 2, ("trian",)),
    Case("unknown-option", ("runs", "--jsno"), 2, ("--jsno",)),
    Case("set-unknown-key", run_args("optim.lrr=0.1"), 2, ("optim.lrr", "did you mean optim.lr")),
    Case("set-no-equals", ("run", "--headless", "--set", "optim.lr"), 2, ("key=value",)),
    Case("set-lr-nan", run_args("optim.lr=nan"), 2, ("optim.lr", "finite")),
    Case("set-lr-inf", run_args("optim.lr=inf"), 2, ("optim.lr", "finite")),
    Case("set-lr-negative", run_args("optim.lr=-1"), 2, ("optim.lr", "> 0")),
    Case("set-momentum-range", run_args("optim.momentum=1.5"), 2, ("optim.momentum", "< 1")),
    Case("set-epochs-zero", run_args("train.epochs=0"), 2, ("train.epochs", ">= 1")),
    Case("set-epochs-text", run_args("train.epochs=ten"), 2, ("train.epochs", "expected int")),
    Case("set-epochs-huge", run_args("train.epochs=99999999999999999999"), 2, ("train.epochs",)),
    Case("set-seed-too-big", run_args("seed=4294967296"), 2, ("seed", "4294967295")),
    Case("set-seed-negative", run_args("seed=-1"), 2, ("seed", ">= 0")),
    Case("set-data-seed-too-big", run_args("data.seed=4294967296"), 2, ("data.seed",)),
    Case("set-dataset-unknown", run_args("data.name=cifar1000"), 2, ("data.name", "cifar10 |")),
    Case("set-device", run_args("device=gpu"), 2, ("device", "cuda:N")),
    Case("set-bool", run_args("optim.nesterov=maybe"), 2, ("optim.nesterov", "bool")),
    Case("set-if-below-one", run_args("data.imbalance_factor=0.5"), 2,
         ("data.imbalance_factor", ">= 1")),
    Case("milestones-repeated", run_args("optim.milestones=0.5,0.5"), 2,
         ("optim.milestones", "strictly increasing")),
    Case("milestones-decreasing", run_args("optim.milestones=0.9,0.5"), 2, ("optim.milestones",)),
    Case("milestones-one", run_args("optim.milestones=1.0"), 2, ("optim.milestones", "(0, 1)")),
    Case("milestones-10000", run_args(f"optim.milestones={BIG_LIST}"), 2,
         ("optim.milestones", "more characters")),
    Case("key-of-another-method", run_args("method.name=ce", "mfm.meta_lr=0.1"), 2,
         ("mfm.meta_lr", "applies only")),
    Case("warmup-too-long", run_args("optim.warmup_epochs=5"), 2, ("optim.warmup_epochs",)),
    Case("name-too-long", ("run", "--headless", "--name", "x" * 5000), 2, ("--name", "200")),
    Case("name-escape-code", ("run", "--headless", "--name", "red\x1b[31m"), 2,
         ("--name", "control characters", "\\e")),
    Case("name-newline", ("run", "--name", "a\nb"), 2, ("--name", "\\n")),
    Case("headless-with-slot", ("run", "--headless", "--slot", "gpu1", *TINY), 2, ("--slot",)),
    Case("dataset-spec-unknown", ("run", "--dataset", "nope"), 2, ("--dataset", "nope")),
    Case("config-name-version", ("run", "--config-name", "x@one"), 2, ("--config-name",)),
    Case("imagefolder-without-root", run_args("data.name=imagefolder"), 2, ("data.root",)),
    Case("data-root-missing", run_args("data.name=fashion-mnist", "data.root=/no/such/folder"),
         2, ("data.root",)),
]

TOML_CASES = [
    Case("toml-if-nan", ("run", "--headless", "--config", "bad.toml"), 2,
         ("data.imbalance_factor", "finite"), _toml("[data]\nimbalance_factor = nan\n")),
    Case("toml-lr-nan", ("run", "--headless", "--config", "bad.toml"), 2, ("optim.lr", "finite"),
         _toml("[optim]\nlr = nan\n")),
    Case("toml-momentum-nan", ("run", "--headless", "--config", "bad.toml"), 2,
         ("optim.momentum", "finite"), _toml("[optim]\nmomentum = nan\n")),
    Case("toml-weight-decay-inf", ("run", "--headless", "--config", "bad.toml"), 2,
         ("optim.weight_decay", "finite"), _toml("[optim]\nweight_decay = inf\n")),
    Case("toml-milestone-nan", ("run", "--headless", "--config", "bad.toml"), 2,
         ("optim.milestones", "finite"), _toml("[optim]\nmilestones = [0.5, nan]\n")),
    Case("toml-unknown-section", ("run", "--headless", "--config", "bad.toml"), 2,
         ("optimm", "unknown key"), _toml("[optimm]\nlr = 0.1\n")),
    Case("toml-wrong-type", ("run", "--headless", "--config", "bad.toml"), 2,
         ("optim.lr", "expected float"), _toml('[optim]\nlr = "fast"\n')),
    Case("toml-float-for-int", ("run", "--headless", "--config", "bad.toml"), 2,
         ("seed", "expected int"), _toml("seed = 1e3\n")),
    Case("toml-huge-int", ("run", "--headless", "--config", "bad.toml"), 2,
         ("train.epochs",), _toml("[train]\nepochs = 9223372036854775807\n")),
    Case("toml-syntax", ("run", "--headless", "--config", "bad.toml"), 2,
         ("--config", "not valid TOML"), _toml("[optim\nlr = \n")),
    Case("toml-missing", ("run", "--headless", "--config", "nope.toml"), 2, ("--config",)),
    Case("toml-is-folder", ("run", "--headless", "--config", "."), 2, ("--config",)),
    Case("toml-binary", ("run", "--headless", "--config", "bin.toml"), 2, ("--config",),
         _bytes_file("bin.toml", b"\xff\xfe\x00garbage\x80")),
    Case("toml-big-list", ("run", "--headless", "--config", "bad.toml"), 2,
         ("optim.milestones",),
         _toml("[optim]\nmilestones = [" + ", ".join(["0.5"] * 10_000) + "]\n")),
]


@pytest.mark.parametrize("case", FLAG_CASES + TOML_CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, env: Env, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env.tmp)
    if case.setup is not None:
        case.setup(env)
    before = fingerprint(env.db)
    code, out, err = call([*case.argv, "--db", str(env.db)] if case.argv[0] != "trian"
                          else list(case.argv), capsys)
    codes = case.code if isinstance(case.code, tuple) else (case.code,)
    assert code in codes, (code, err[:2000])
    assert out == ""
    assert_one_line(err, *case.needles)
    assert fingerprint(env.db) == before


# -- database files ----------------------------------------------------------------------------

def _sqlite_header_garbage(e: Env) -> Path:
    p = e.tmp / "garbage.db"
    p.write_bytes(b"SQLite format 3\x00" + os.urandom(8192))
    return p


def _truncated(e: Env) -> Path:
    p = e.tmp / "truncated.db"
    data = e.db.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def _text_file(e: Env) -> Path:
    p = e.tmp / "notes.db"
    p.write_text("these are my notes\n")
    return p


def _version(value: str) -> Callable[[Env], Path]:
    def make(e: Env) -> Path:
        import sqlite3

        p = e.tmp / f"version-{abs(hash(value))}.db"
        shutil.copy(e.db, p)
        con = sqlite3.connect(p)
        con.execute(f"UPDATE schema_info SET version = {value} WHERE id = 1")
        con.commit()
        con.close()
        return p
    return make


def _foreign_tables(e: Env) -> Path:
    import sqlite3

    p = e.tmp / "other.db"
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, path TEXT)")
    con.commit()
    con.close()
    return p


def _folder(e: Env) -> Path:
    return e.tmp


def _missing_parent(e: Env) -> Path:
    return e.tmp / "no" / "such" / "folder" / "experiments.db"


DB_CASES = [
    ("sqlite-header-garbage", _sqlite_header_garbage, ("garbage.db",)),
    ("truncated", _truncated, ("truncated.db",)),
    ("not-sqlite", _text_file, ("notes.db", "not a SQLite database")),
    ("version-text", _version("'abc'"), ("version-",)),
    ("version-real", _version("1.5"), ("version-",)),
    ("version-newer", _version("99"), ("newer",)),
    ("foreign-tables", _foreign_tables, ("other.db", "not mfm records")),
    ("directory", _folder, ("directory",)),
    ("missing-parent", _missing_parent, ("does not exist",)),
]


@pytest.mark.parametrize("command", [["runs"], ["show", "1"], ["run", "--headless", *TINY]],
                         ids=lambda c: c[0])
@pytest.mark.parametrize("make,needles", [(m, n) for _, m, n in DB_CASES],
                         ids=[i for i, _, _ in DB_CASES])
def test_bad_database(make: Callable[[Env], Path], needles: tuple[str, ...], command: list[str],
                      env: Env, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env.tmp)
    target = make(env)
    before = fingerprint(target)
    listing = sorted(p.name for p in env.tmp.iterdir())
    code, out, err = call([*command, "--db", str(target)], capsys)
    assert code in (1, 2), (code, err[:2000])
    assert out == ""
    assert_one_line(err, *needles)
    assert fingerprint(target) == before
    assert sorted(p.name for p in env.tmp.iterdir()) == listing  # nothing created beside it


def test_bad_database_url(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = call(["runs", "--db", "nosuchdriver://user@host/db"], capsys)
    assert code in (1, 2)
    assert_one_line(err, "--db")


def test_busy_timeout_env_checked(env: Env, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFM_BUSY_TIMEOUT_MS", "soon")
    before = fingerprint(env.db)
    code, _, err = call(["runs", "--db", str(env.db)], capsys)
    assert code == 2
    assert_one_line(err, "MFM_BUSY_TIMEOUT_MS")
    assert fingerprint(env.db) == before


@pytest.mark.slow  # a real subprocess
def test_write_lock_held_past_busy_timeout(env: Env, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds the write lock longer than the busy timeout: one line naming the
    file, exit 1, nothing written."""
    locker = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
         "c.execute('BEGIN IMMEDIATE'); print('locked', flush=True); sys.stdin.read()",
         str(env.db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline().strip() == "locked"  # blocks until the lock is held
        monkeypatch.setenv("MFM_BUSY_TIMEOUT_MS", "200")
        before = fingerprint(env.db)
        # queueing a run writes: it must give up after the busy timeout, with one line
        code, out, err = call(["run", "--set", "train.epochs=1", "--db", str(env.db)], capsys)
        assert code in (1, 2), err
        assert_one_line(err, str(env.db.name), "busy")
        assert fingerprint(env.db) == before
    finally:
        locker.kill()
        locker.wait()


# -- checkpoints, data folders, a malicious pickle --------------------------------------------

class _Marker:
    """Unpickling this would create a file: the CIFAR loader must refuse it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_malicious_cifar_folder(env: Env, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env.tmp)
    root = env.tmp / "cifar"
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    marker = env.tmp / "pwned"
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"):
        (folder / name).write_bytes(pickle.dumps({"data": _Marker(str(marker))}))
    before = fingerprint(env.db)
    code, out, err = call([*run_args("data.name=cifar10", f"data.root={root}"),
                           "--db", str(env.db)], capsys)
    assert code == 2, err
    assert_one_line(err, "system", "refusing")
    assert not marker.exists()
    assert fingerprint(env.db) == before


def test_resume_after_checkpoint_removed_is_refused(env: Env,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose last.pt went missing is not silently retrained from scratch."""
    before = fingerprint(env.db)
    code, out, err = call(["resume", "3", "--db", str(env.db)], capsys)
    assert code == 2
    assert_one_line(err, "last.pt")
    assert fingerprint(env.db) == before


# -- a run that diverges, a disk that fills -----------------------------------------------------

@pytest.mark.slow
def test_diverging_run_fails_with_its_reason(env: Env, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(env.tmp)
    code, out, err = call([*run_args("optim.lr=1e6"), "--name", "diverges", "--db",
                           str(env.db)], capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "diverged at epoch" in lines[0], err[-2000:]
    assert "Traceback" not in err
    with Database(str(env.db)) as db:
        rec = repo.list_runs(db, limit=1)[0]
        assert rec.name == "diverges" and rec.status == "failed"
        assert rec.error is not None and "diverged at epoch" in rec.error
        assert rec.summary is None  # no "completed" result recorded


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs, filled: where this machine lets us mount one."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root here")
    mnt = tmp_path / "full"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_export_onto_a_full_disk(env: Env, full_disk: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    before = fingerprint(env.db)
    code, out, err = call(["export", "1", "--format", "json", "-o", str(full_disk / "x.json"),
                           "--db", str(env.db)], capsys)
    assert code == 2
    assert_one_line(err, "No space left on device")
    assert not (full_disk / "x.json").exists()
    assert fingerprint(env.db) == before


@pytest.mark.slow
def test_checkpoint_onto_a_full_disk(env: Env, full_disk: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MFM_RUNS_DIR", str(full_disk))
    code, out, err = call([*run_args(), "--name", "no room", "--db", str(env.db)], capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "No space left on device" in lines[0], err[-2000:]
    with Database(str(env.db)) as db:
        rec = repo.list_runs(db, limit=1)[0]
        assert rec.name == "no room" and rec.status == "failed"
        assert "No space left on device" in (rec.error or "")


# -- the last line of defence -------------------------------------------------------------------

def test_unexpected_exception_is_one_line_with_a_log(env: Env, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from mfm.store import repo as repo_module

    def broken(*_a, **_k):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(repo_module, "list_runs", broken)
    code, out, err = call(["runs", "--db", str(env.db)], capsys)
    assert code == 1
    assert_one_line(err, "RuntimeError: something nobody expected", "MFM_DEBUG=1")
    logs = list((tmp_path / "logs").glob("mfm-crash-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()

    monkeypatch.setenv("MFM_DEBUG", "1")
    code, out, err = call(["runs", "--db", str(env.db)], capsys)
    assert code == 1 and "Traceback" in err and "something nobody expected" in err
