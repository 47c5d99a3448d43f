"""How long `mfm sweep plan` and `mfm sweep show` take on a database of 1,000 runs in 20 sweeps.

Builds the records through the product's own paths (each sweep's cells planned, a completed
run with a summary and per-class accuracy recorded for each, linked to its cell), then times
the two commands as a user runs them: a fresh `mfm` process each time (interpreter start-up
included), median of 5. Writes a Markdown block into docs/BENCHMARKS.md.

    python bench/sweep_speed.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = """
name = "{name}"
[data]
name = "digits"
[train]
epochs = 10
[grid]
"method.name" = ["ce", "balanced_softmax", "mfm", "focal", "cb"]
"data.imbalance_factor" = [10, {ifx}]
"seed,data.seed" = [[0, 0], [1, 1], [2, 2], [3, 3], [4, 4]]
"""


def build(db_path: Path, folder: Path, sweeps: int) -> list[Path]:
    import random

    from mfm.store import Database, queue, repo
    from mfm.store import sweeps as sweep_store
    from mfm.sweeps.plan import plan_sweep
    from mfm.sweeps.spec import read_sweep

    rng = random.Random(0)
    files = []
    with Database(str(db_path)) as db:
        for i in range(sweeps):
            f = folder / f"s{i}.toml"
            f.write_text(SWEEP.format(name=f"study-{i}", ifx=20 + i))
            files.append(f)
            plan = plan_sweep(db, read_sweep(f), code_version="bench")
            rec = sweep_store.save_sweep(db, name=plan.spec.name, file_text=plan.spec.text,
                                         grid=plan.grid(), code_version="bench")
            planned = []
            for c in plan.cells:
                run_id = queue.enqueue_run(db, config=c.cell.resolved, epochs_total=10,
                                           name=f"{plan.spec.name} {c.cell.arm}",
                                           code_version="bench")
                queue.transition(db, run_id, "starting", allowed_from=("queued",))
                queue.transition(db, run_id, "running")
                acc = [rng.random() for _ in range(10)]
                for ep in range(10):
                    repo.log_epoch(db, run_id, ep, {"acc": sum(acc) / 10, "train_loss": 1.0},
                                   acc)
                repo.update_run(db, run_id, class_counts={
                    "classes": [str(k) for k in range(10)], "train": list(range(170, 70, -10)),
                    "meta": [10] * 10, "test": [50] * 10}, summary={
                    "final": {"acc": sum(acc) / 10, "many": acc[0], "medium": acc[4],
                              "few": acc[9]},
                    "best": {"acc": max(acc)}, "seconds_per_epoch": rng.uniform(1, 2)})
                queue.transition(db, run_id, "completed")
                planned.append(sweep_store.PlannedCell(idx=c.cell.index, arm=c.cell.arm,
                                                       seed=c.cell.seed,
                                                       config_hash=c.config_hash,
                                                       run_id=run_id))
            sweep_store.set_cells(db, rec.id, planned)
    return files


def timed(args: list[str], env: dict[str, str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mfm.cli.main", *args], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "bench.db"
        files = build(db, folder, args.sweeps)
        env = {**os.environ, "MFM_DB": str(db), "COLUMNS": "200"}
        from mfm.store import Database, repo

        with Database(str(db)) as d:
            n_runs = len(repo.list_runs(d, confusion=False))
        plan_s = timed(["sweep", "plan", str(files[-1])], env)
        show_s = timed(["sweep", "show", f"study-{args.sweeps - 1}"], env)
        md_s = timed(["sweep", "show", f"study-{args.sweeps - 1}", "--markdown"], env)
        pc_s = timed(["sweep", "show", f"study-{args.sweeps - 1}", "--per-class", "mfm · "
                      f"imbalance_factor={20 + args.sweeps - 1}"], env)
        list_s = timed(["sweep", "list"], env)
        base_s = timed(["--version"], env)
    cpu = f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    text = (f"### Sweep commands on {n_runs:,} runs in {args.sweeps} sweeps (`bench/sweep_speed.py`)\n\n"
            f"Command: `python bench/sweep_speed.py`  \nMachine: {cpu}, Python "
            f"{platform.python_version()}, SQLite  \nDate: {dt.date.today():%Y-%m-%d}\n\n"
            "Each figure is the median of 5 fresh `mfm` processes (start-up included; "
            f"`mfm --version` alone takes {base_s:.2f} s here). Target: under 1 s each.\n\n"
            "| command | seconds |\n|---|---:|\n"
            f"| `mfm sweep plan FILE` (50 cells, all answered by finished runs) | {plan_s:.2f} |\n"
            f"| `mfm sweep show NAME` (10 arms × 5 seeds) | {show_s:.2f} |\n"
            f"| `mfm sweep show NAME --markdown` | {md_s:.2f} |\n"
            f"| `mfm sweep show NAME --per-class ARM` | {pc_s:.2f} |\n"
            f"| `mfm sweep list` | {list_s:.2f} |\n")
    sys.path.insert(0, str(ROOT / "bench"))
    from longtail import write_section

    write_section(Path(args.out), "sweep-speed", text)
    print(text)


if __name__ == "__main__":
    main()
