"""mfm-tui speed: (1) launch to the first rendered frame, (2) one refresh tick of the runs
screen against a large database.

(1) starts ``mfm-tui`` (or ``python -m mfm_tui`` when the console script is not installed) in
a pseudo-terminal of 100x30 and times until the first frame's text is on the terminal (the
runs screen's title), and until the table shows the runs; median of ``--launches``.

(2) builds (once, cached under /tmp) a database of 1,000 runs x 100 epochs x 100 classes
(epoch scalars, per-class vectors, step losses, confusion matrices, 8 runs running, 2 queued),
opens the runs screen headless and times ``fetch`` (the worker's queries) and ``apply`` (the
table update) of one tick: with nothing new, and after each running run logged an epoch.

    python bench/tui.py                     # prints a Markdown section for docs/BENCHMARKS.md
    python bench/tui.py --launches 9 --ticks 30
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import platform
import pty
import re
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)"
                  r"|\x1b[PX^_].*?\x1b\\|\x1b[@-Z\\-_]")
N_RUNS, N_EPOCHS, N_CLASSES = 1000, 100, 100
N_RUNNING, N_QUEUED = 8, 2


def tui_command() -> list[str]:
    exe = Path(sys.executable).with_name("mfm-tui")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mfm_tui"]


# -- (1) launch to first frame ----------------------------------------------------------------

def time_launch(db: str, timeout: float = 30.0) -> tuple[float, float]:
    """Seconds from exec to (the first frame's text, the table with its runs)."""
    pid, fd = pty.fork()
    if pid == 0:  # child
        os.environ["TERM"] = "xterm-256color"
        os.execvp(tui_command()[0], [*tui_command(), "--db", db])
    start = time.perf_counter()
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    first = loaded = None
    text = ""
    try:
        while time.perf_counter() - start < timeout and loaded is None:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536).decode("utf-8", "replace")
            except OSError:
                break
            text += ANSI.sub("", chunk)
            now = time.perf_counter() - start
            if first is None and " Runs" in text:
                first = now
            if first is not None and " Runs (" in text:
                loaded = now
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    if first is None or loaded is None:
        raise RuntimeError(f"mfm-tui did not draw its runs screen within {timeout:g} s")
    return first, loaded


def time_import(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


# -- (2) a large database --------------------------------------------------------------------

def build_db(path: Path) -> None:
    """1,000 runs x 100 epochs x 100 classes with bulk inserts (minutes with log_epoch)."""
    import random

    from mfm.config import config_from_dict, config_to_dict
    from mfm.store import Database
    from mfm.store.models import ClassMetric, EpochMetric, LatestMetric, Run, StepMetric

    rng = random.Random(0)
    methods = ["ce", "focal", "cb", "ldam_drw", "balanced_softmax", "mwnet", "mfm"]
    train = [max(1, int(500 * 0.01 ** (c / (N_CLASSES - 1)))) for c in range(N_CLASSES)]
    counts = json.dumps({"classes": [f"c{c}" for c in range(N_CLASSES)], "train": train,
                         "meta": [10] * N_CLASSES, "test": [100] * N_CLASSES})
    tmp = path.with_suffix(".building")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    t0 = time.time() - 86400 * 30
    with Database(str(tmp)) as db, db.session_scope() as s:
        runs, epochs, classes, steps, latest = [], [], [], [], []
        for i in range(N_RUNS):
            rid = i + 1
            method = methods[i % len(methods)]
            cfg = config_to_dict(config_from_dict({
                "data": {"name": "cifar100", "imbalance_factor": 100.0},
                "method": {"name": method}, "model": {"name": "resnet32"},
                "train": {"epochs": N_EPOCHS}, "seed": i % 5}))
            status = ("queued" if i >= N_RUNS - N_QUEUED else
                      "running" if i >= N_RUNS - N_QUEUED - N_RUNNING else "completed")
            done = {"completed": N_EPOCHS, "running": N_EPOCHS // 2, "queued": 0}[status]
            start = t0 + 1800 * i
            vec = []
            for e in range(done):
                base = 0.3 + 0.4 * e / N_EPOCHS
                vec = [round(min(1.0, max(0.0, base + 0.3 * (1 - c / N_CLASSES)
                                          + rng.uniform(-0.05, 0.05))), 2)
                       for c in range(N_CLASSES)]
                acc = sum(vec) / N_CLASSES
                scalars = {"acc": acc, "many": sum(vec[:35]) / 35, "medium": sum(vec[35:70]) / 35,
                           "few": sum(vec[70:]) / 30, "train_loss": 2 - e / 60,
                           "test_loss": 2.2 - e / 60, "lr": 0.1, "epoch_seconds": 30.0}
                epochs.extend({"run_id": rid, "key": k, "epoch": e, "value": v,
                               "at": start + 30 * e} for k, v in scalars.items())
                classes.append({"run_id": rid, "epoch": e, "kind": "acc",
                                "values_json": json.dumps(vec)})
                steps.extend({"run_id": rid, "key": "loss", "step": 50 * e + 10 * k,
                              "epoch": e, "value": 2 - e / 60 + rng.uniform(0, 0.1),
                              "at": start + 30 * e} for k in range(5))
            if done:
                latest.extend({"run_id": rid, "key": k, "value": v, "step": None,
                               "epoch": done - 1} for k, v in scalars.items())
            final = {"acc": acc, "many": scalars["many"], "medium": scalars["medium"],
                     "few": scalars["few"], "epoch": N_EPOCHS - 1} if done else None
            confusion = None
            if status == "completed":
                confusion = json.dumps([[int(100 * vec[r]) if r == c else
                                         (int(100 * (1 - vec[r])) if c == (r + 1) % N_CLASSES
                                          else 0) for c in range(N_CLASSES)]
                                        for r in range(N_CLASSES)])
            runs.append({
                "id": rid, "name": f"{method}-s{i % 5}-{rid}", "status": status,
                "created_at": start - 60, "queued_at": start - 60,
                "started_at": None if status == "queued" else start,
                "finished_at": start + 30 * N_EPOCHS if status == "completed" else None,
                "host": "bench", "pid": None, "device": None if status == "queued" else "cuda",
                "config_json": json.dumps(cfg), "split_hash": "0123456789abcdef",
                "error": None, "epochs_total": N_EPOCHS, "epoch": done - 1 if done else None,
                "summary_json": json.dumps({"final": final, "best": final}) if final else None,
                "class_counts_json": None if status == "queued" else counts,
                "confusion_json": confusion, "checkpoint_dir": f"/runs/{rid}",
                "log_path": None, "heartbeat_at": time.time() if status == "running" else None,
                "slot": f"gpu{i % 8}" if status != "queued" else None, "attempt": 0,
                "resume_requested": 0, "code_version": "bench"})
        s.execute(Run.__table__.insert(), runs)
        for table, rows in ((EpochMetric, epochs), (ClassMetric, classes), (StepMetric, steps),
                            (LatestMetric, latest)):
            for k in range(0, len(rows), 50_000):
                s.execute(table.__table__.insert(), rows[k:k + 50_000])
    tmp.rename(path)
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)


def copy_to_postgres(sqlite_path: Path, url: str) -> None:
    """The same records in a fresh PostgreSQL database (``url`` names one that may be
    dropped and recreated): the schema created by opening it, then every table's rows copied
    in chunks, parents first, and the id sequences moved past the copied ids."""
    from sqlalchemy import create_engine, make_url, select, text

    from mfm.store import Database
    from mfm.store.models import Base

    Database(str(sqlite_path)).close()  # the cached file at this code's schema revision
    target = make_url(url).set(drivername="postgresql+psycopg")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()
    Database(url).close()  # creates the schema
    src = create_engine(f"sqlite:///{sqlite_path}")
    dst = create_engine(target)
    with src.connect() as sc, dst.begin() as dc:
        for table in Base.metadata.sorted_tables:
            if table.name == "schema_info":
                continue
            result = sc.execution_options(stream_results=True).execute(select(table))
            while rows := result.fetchmany(20_000):
                dc.execute(table.insert(), [dict(r._mapping) for r in rows])
        for table in ("runs", "dataset_specs", "configs", "sweeps"):
            dc.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"COALESCE((SELECT MAX(id) FROM {table}), 1))"))
        dc.execute(text("ANALYZE"))
    src.dispose()
    dst.dispose()


def advance(db_path: str, step: int) -> None:
    """Each running run logs its next epoch (what the run processes do between two ticks)."""
    from mfm.store import Database, queue, repo

    with Database(db_path) as db:
        for rec in queue.active_runs(db):
            e = (rec.epoch or 0) + 1
            repo.log_epoch(db, rec.id, e, {"acc": 0.5 + 0.001 * step, "many": 0.7,
                                           "medium": 0.5, "few": 0.3}, [0.5] * N_CLASSES)
            repo.update_run(db, rec.id, heartbeat_at=time.time())


FILTER = "tag:keep"


def tag_runs(db_path: str) -> None:
    """Tags in place (``keep`` on every other run and on the running ones, ``best`` on one in
    ten) and a note on one in ten, as a daily database has them."""
    from sqlalchemy import select

    from mfm.store import Database, repo
    from mfm.store.models import Run

    with Database(db_path) as db:
        with db.session_scope(read_only=True) as s:
            rows = s.execute(select(Run.id, Run.status)).all()
        for rid, status in rows:
            add = (["keep"] if rid % 2 == 0 or status == "running" else []) + \
                (["best"] if rid % 10 == 0 else [])
            if add:
                repo.set_tags(db, rid, add=add)
            if rid % 10 == 0:
                repo.set_note(db, rid, f"note on run {rid}")


async def time_ticks(db_path: str, ticks: int) -> dict[str, list[float]]:
    from mfm_tui.app import MfmApp
    from mfm_tui.screens.runs import RunsScreen
    from mfm_tui.services import Services

    out: dict[str, list[float]] = {"first_fetch": [], "first_apply": [], "idle_fetch": [],
                                   "idle_apply": [], "busy_fetch": [], "busy_apply": []}
    tag_runs(db_path)
    app = MfmApp(Services(db_path, gpu_probe=lambda: []), poll_status=False)
    async with app.run_test(size=(120, 40)) as pilot:
        deadline = time.monotonic() + 120
        while not (isinstance(app.screen, RunsScreen) and app.screen.polls):
            if time.monotonic() > deadline:
                raise RuntimeError("the runs screen did not load")
            await pilot.pause(0.05)
        screen = app.screen
        screen.POLL_INTERVAL = None  # this benchmark drives the ticks itself
        screen.filter_text = FILTER  # a filter in place: every reorder applies it
        # a cold first load, for reference
        screen.fingerprints, screen.records, screen.order = {}, {}, []
        t = time.perf_counter()
        delta = screen.fetch(screen.poll_args())
        out["first_fetch"].append(time.perf_counter() - t)
        t = time.perf_counter()
        screen.apply(delta)
        out["first_apply"].append(time.perf_counter() - t)
        await pilot.pause(0.2)
        for i in range(ticks):
            for kind in ("idle", "busy"):
                if kind == "busy":
                    advance(db_path, i)
                t = time.perf_counter()
                delta = screen.fetch(screen.poll_args())
                out[f"{kind}_fetch"].append(time.perf_counter() - t)
                t = time.perf_counter()
                screen.apply(delta)
                out[f"{kind}_apply"].append(time.perf_counter() - t)
                screen.polls += 1  # as the poll loop counts them (tags re-read every 5th)
                if kind == "busy":
                    assert len(delta.delta.changed) == N_RUNNING, len(delta.delta.changed)
                await pilot.pause(0.02)
    return out


def ms(values: list[float]) -> str:
    return f"{1000 * statistics.median(values):.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--launches", type=int, default=5)
    p.add_argument("--ticks", type=int, default=20)
    p.add_argument("--db", default=f"/tmp/mfm_tui_bench_{N_RUNS}x{N_EPOCHS}x{N_CLASSES}.db",
                   help="the large database (built once, then reused)")
    p.add_argument("--pg", default=None, metavar="URL",
                   help="also time the refresh ticks and the first load on PostgreSQL: the "
                        "same records copied into this database (dropped and recreated)")
    args = p.parse_args()

    big = Path(args.db)
    if not big.exists():
        t = time.perf_counter()
        build_db(big)
        print(f"built {big} ({big.stat().st_size / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - t:.0f} s", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="mfm-tui-bench-"))
    try:
        tick_db = work / "ticks.db"
        shutil.copy(big, tick_db)  # the ticks write epochs: keep the cache pristine
        small = work / "small.db"
        shutil.copy(big, small)
        launches_small = []
        for _ in range(args.launches):
            launches_small.append(time_launch(str(work / "empty.db")))
        launches_big = [time_launch(str(small)) for _ in range(args.launches)]
        imports = [time_import("import textual.app, sqlalchemy.orm") for _ in range(3)]
        ticks = asyncio.run(time_ticks(str(tick_db), args.ticks))
        pg_ticks = None
        if args.pg:
            copy_to_postgres(big, args.pg)
            pg_ticks = asyncio.run(time_ticks(args.pg, args.ticks))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()[0]
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import textual

    first_e = [f for f, _ in launches_small]
    loaded_e = [lo for _, lo in launches_small]
    first_b = [f for f, _ in launches_big]
    loaded_b = [lo for _, lo in launches_big]
    print(f"""### mfm-tui

`python bench/tui.py --launches {args.launches} --ticks {args.ticks}` on {cpu}
({os.cpu_count()} CPUs, load average {load:.1f} when it finished), Python
{platform.python_version()}, Textual {textual.__version__}, {time.strftime('%Y-%m-%d')}. Medians.

| what | measured | target |
|---|---|---|
| launch → first rendered frame (empty database) | {statistics.median(first_e):.2f} s | < 1.0 s (ambition < 0.5 s) |
| launch → table filled (empty database) | {statistics.median(loaded_e):.2f} s | |
| launch → first rendered frame ({N_RUNS:,} runs) | {statistics.median(first_b):.2f} s | < 1.0 s |
| launch → table filled ({N_RUNS:,} runs) | {statistics.median(loaded_b):.2f} s | |
| for reference: `python -c "import textual.app, sqlalchemy.orm"` | {statistics.median(imports):.2f} s | |
| refresh tick, nothing new: fetch + apply | {ms(ticks['idle_fetch'])} + {ms(ticks['idle_apply'])} ms | < 30 ms |
| refresh tick, {N_RUNNING} running runs each logged an epoch: fetch + apply | {ms(ticks['busy_fetch'])} + {ms(ticks['busy_apply'])} ms | < 30 ms |
| first load of the table (all {N_RUNS:,} runs): fetch + apply | {ms(ticks['first_fetch'])} + {ms(ticks['first_apply'])} ms | (once) |

Database: {N_RUNS:,} runs × {N_EPOCHS} epochs × {N_CLASSES} classes (8 epoch scalars and one
per-class vector per epoch, 5 step losses per epoch, a {N_CLASSES}×{N_CLASSES} confusion matrix
per completed run; {N_RUNNING} running, {N_QUEUED} queued). "First rendered frame" is the
runs screen's title on a {100}×{30} pseudo-terminal: SQLAlchemy and the records load in a
thread after it. A tick's fetch runs in a thread worker (ids and statuses from the status index,
the live columns of unfinished runs, then only the changed runs in full); apply updates only
the table cells that changed. The first load reads every run (configs and summaries as JSON;
not the confusion matrices, which the table never shows), once, in the worker.""")
    if pg_ticks is not None:
        print(f"""
The same records on PostgreSQL 15 (`--pg URL`: copied into a fresh database on this machine,
Unix socket), the same ticks:

| what | SQLite | PostgreSQL | target |
|---|---|---|---|
| refresh tick, nothing new: fetch + apply | {ms(ticks['idle_fetch'])} + {ms(ticks['idle_apply'])} ms | {ms(pg_ticks['idle_fetch'])} + {ms(pg_ticks['idle_apply'])} ms | < 30 ms |
| refresh tick, {N_RUNNING} runs logged an epoch: fetch + apply | {ms(ticks['busy_fetch'])} + {ms(ticks['busy_apply'])} ms | {ms(pg_ticks['busy_fetch'])} + {ms(pg_ticks['busy_apply'])} ms | < 30 ms |
| first load (all {N_RUNS:,} runs): fetch + apply | {ms(ticks['first_fetch'])} + {ms(ticks['first_apply'])} ms | {ms(pg_ticks['first_fetch'])} + {ms(pg_ticks['first_apply'])} ms | (once) |""")


if __name__ == "__main__":
    main()
