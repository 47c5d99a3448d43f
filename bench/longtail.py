"""Accuracy and cost of every method on long-tailed data: a benchmark profile is a sweep file.

A profile is ``bench/sweeps/<profile>.toml``, run by the product's own sweep runner (``mfm
sweep run --headless``: finished cells are reused, interrupted ones resumed, so a study picks
up where it stopped) in a database of its own; its table is ``mfm sweep show --markdown`` —
mean ± std over seeds of final-epoch overall / many / medium / few accuracy, validation
accuracy where the profile holds out a split, best-epoch accuracy (labelled: chosen on the
test split) and seconds per epoch — written into docs/BENCHMARKS.md with the command, machine
and date. There is one grid implementation: the product's.

    python bench/longtail.py --profile quick          # digits-LT, every method, minutes
    python bench/longtail.py --profile cpu            # the cpu study (this machine: long)
    python bench/longtail.py --profile cifar --set data.root=~/data   # the GPU protocol
    python bench/longtail.py --profile ablation       # every MFM variant validation accepts
    python bench/longtail.py --profile select         # the ablation's leaders, 3 seeds
    python bench/longtail.py --profile transfer       # then --profile transfer-apply
    python bench/longtail.py --profile mfm-cost-screen --parallel 2   # two runs at a time
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "bench" / "sweeps"


def profiles() -> list[str]:
    return sorted(p.stem for p in SWEEPS.glob("*.toml"))


def machine() -> str:
    import torch

    dev = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
           else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    return f"{dev}, torch {torch.__version__}, Python {platform.python_version()}"


def write_section(path: Path, key: str, text: str) -> None:
    """Replace the block between ``<!-- key:begin -->`` and ``<!-- key:end -->`` (or append)."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def mfm(args: list[str]) -> tuple[int, str]:
    """Run the ``mfm`` CLI in this process; (exit code, what it printed on stdout)."""
    import contextlib
    import io

    from mfm.cli.main import main

    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            main(args)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue()


def run_in_parallel(sweep_file: Path, db: str, sets: list[str], slots: int) -> None:
    """Train the sweep's missing cells ``slots`` at a time: start a worker of this database
    (each run with cores/slots threads), queue the cells for it, and wait until it exits,
    idle. A worker that already serves the database would train them with its own slots and
    threads, which the table's seconds per epoch would not say: that is refused."""
    import subprocess
    import time

    from mfm.runner.launch import serving

    runs_root = Path(os.environ["MFM_RUNS_DIR"])
    if serving(db, runs_root) is not None:
        raise SystemExit(f"a worker already serves {db}: stop it (mfm worker stop) first")
    threads = str(max(1, (os.cpu_count() or 1) // slots))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    worker = subprocess.Popen([sys.executable, "-m", "mfm.cli.main", "worker", "--cpu-slots",
                               str(slots), "--idle-exit", "20", "--db", db], env=env)
    deadline = time.monotonic() + 60
    while serving(db, runs_root) is None:
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise SystemExit("the worker did not start")
        time.sleep(0.2)
    code, _ = mfm(["sweep", "run", str(sweep_file), "--db", db, *sets])
    if code != 0:
        worker.terminate()
        raise SystemExit(f"the sweep could not be queued (exit {code})")
    if worker.wait() != 0:
        raise SystemExit("the worker stopped; run the same command again to continue")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=profiles(), default="cpu")
    ap.add_argument("--file", default=None, help="another sweep file instead of the "
                    "profile's (the section is still named after --profile)")
    ap.add_argument("--db", default=None, help="records (default: bench-<profile>.db at the "
                    "repository root)")
    ap.add_argument("--runs-dir", default=None, help="checkpoints (default: runs-<profile>/)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the sweep's base for every cell (e.g. device=cuda)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--parallel", type=int, default=1, metavar="N",
                    help="train N cells at a time on this CPU (queued for an `mfm worker "
                    "--cpu-slots N`, each run with cores/N threads) instead of one after "
                    "another in the foreground; seconds per epoch then compare across arms "
                    "run under the same sharing")
    args = ap.parse_args(argv)
    db = args.db or str(ROOT / f"bench-{args.profile}.db")
    os.environ["MFM_RUNS_DIR"] = str(Path(args.runs_dir or ROOT / f"runs-{args.profile}")
                                     .resolve())
    started = dt.datetime.now(dt.UTC)
    from mfm.sweeps.spec import read_sweep

    sweep_file = Path(args.file) if args.file else SWEEPS / f"{args.profile}.toml"
    sets = [x for s in args.set for x in ("--set", s)]
    if args.parallel > 1:
        run_in_parallel(sweep_file, db, sets, args.parallel)
    code, _ = mfm(["sweep", "run", str(sweep_file), "--headless", "--db", db, *sets])
    if code != 0:
        raise SystemExit(f"the sweep stopped (exit {code}); run the same command again to "
                         "continue where it stopped")
    code, table = mfm(["sweep", "show", read_sweep(sweep_file).name, "--markdown",
                       "--db", db])
    if code != 0:
        raise SystemExit(f"mfm sweep show failed (exit {code})")
    spec_lines = [line[2:] for line in sweep_file.read_text().splitlines()
                  if line.startswith("# ")]
    cmd = "python bench/longtail.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"### Long-tail study, profile `{args.profile}`\n\n"
            f"Command: `{cmd.strip()}` (the sweep file `{sweep_file.relative_to(ROOT) if sweep_file.is_relative_to(ROOT) else sweep_file}`; "
            f"the table is `mfm sweep show --markdown`)  \nMachine: {machine()}  \n"
            f"Date: {started:%Y-%m-%d} (UTC)  \nSetting: {' '.join(spec_lines)}\n\n"
            f"{table.rstrip()}\n\n"
            "Accuracy in % on the balanced test split, mean ± std over seeds; **final epoch** "
            "is the main number. The best epoch is picked on the validation split where the "
            "profile holds one out (else on the test split, optimistic: shown only for "
            "comparison with papers that report it); validation accuracy is the number to "
            "choose a variant by.\n")
    write_section(Path(args.out), f"longtail:{args.profile}", text)
    print(text)


if __name__ == "__main__":
    main()
