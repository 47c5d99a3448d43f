"""Seconds per epoch under load: the old thread default against train.threads=auto and
train.threads=follow.

Every run is a fresh process (OpenMP reads its environment once, at torch's load): a ce or MFM
run on Fashion-MNIST-LT (IF 50, head 500, ResNet-8, 2 epochs), timed by the engine (training
seconds per epoch, evaluation excluded). Each is measured quiet and with busy-loop processes
beside it, in the same sitting, and two runs at once are compared with one alone (throughput).

    python bench/threads.py                       # ce and mfm, old vs auto, quiet vs 1 busy loop
    python bench/threads.py --methods ce --modes old,auto,one --busy 0,1,3
    python bench/threads.py --pairs               # also: two runs at once vs one alone
    python bench/threads.py --smoke               # digits, 1 epoch: seconds (for the tests)

Modes: ``old`` = torch's default (all cores, OpenMP spinning: what runs got before
train.threads); ``auto`` = train.threads=auto as the supervisor plans it (all cores for one
run, passive waiting, one count for the whole run); ``follow`` = train.threads=follow (auto,
then fewer threads while other processes keep the cores busy); ``auto-active`` = auto with
OMP_WAIT_POLICY=ACTIVE set by the user (spinning); ``one`` = one thread (the floor under
heavy load); ``spinN`` = the old default with libgomp's GOMP_SPINCOUNT=N (an experiment).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mfm.config import config_to_dict, load_config  # noqa: E402 (torch-free)
from mfm.runner.threads import child_env  # noqa: E402 (torch-free)

PLAN_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "MFM_THREADS",
             "MFM_INTEROP_THREADS", "MFM_THREADS_FROM", "GOMP_SPINCOUNT")


def run_overrides(method: str, *, smoke: bool, epochs: int) -> list[str]:
    data = (["data.name=digits", "data.imbalance_factor=10", "model.name=resnet_tiny"]
            if smoke else ["data.name=fashion-mnist", "data.imbalance_factor=50",
                           "data.head_count=500", "model.name=resnet8"])
    return [f"method.name={method}", *data, f"train.epochs={epochs}", "train.checkpoint=false",
            "device=cpu", "seed=0"]


def mode_env(mode: str, overrides: list[str], runs: int) -> dict[str, str]:
    """The environment of one run process in ``mode``."""
    base = {k: v for k, v in os.environ.items() if k not in PLAN_VARS}
    if mode == "old":  # torch's default: every core, OpenMP spinning, nothing following
        cores = str(len(os.sched_getaffinity(0)))
        return {**base, "OMP_NUM_THREADS": cores, "MKL_NUM_THREADS": cores}
    if mode == "one":
        return {**base, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MFM_THREADS": "1",
                "MFM_THREADS_FROM": "auto"}
    if mode.startswith("spin"):  # an experiment: OpenMP spins this many times, then sleeps
        return {**base, "GOMP_SPINCOUNT": mode[4:]}
    if mode in ("auto", "auto-active", "follow"):  # auto-active: the user asked OpenMP to spin
        if mode == "auto-active":
            base = {**base, "OMP_WAIT_POLICY": "ACTIVE"}
        if mode == "follow":
            overrides = [*overrides, "train.threads=follow"]
        env, _ = child_env(config_to_dict(load_config(None, overrides)), runs=runs,
                           environ=base)
        return env
    raise SystemExit(f"unknown mode {mode!r} (old | auto | follow | auto-active | one | spinN)")


def one(overrides: list[str]) -> None:
    """In the measured process: build the data, fit, print the engine's timing as JSON."""
    import torch

    from mfm.data import build_data
    from mfm.engine import fit, seed_everything

    cfg = load_config(None, overrides)
    device = torch.device("cpu")
    seed_everything(cfg.seed, device)
    data = build_data(cfg.data, batch_size=cfg.train.batch_size,
                      eval_batch_size=cfg.train.eval_batch_size, device=device, seed=cfg.seed)
    summary = fit(cfg, data, device=device).summary
    print(json.dumps({"seconds_per_epoch": summary["seconds_per_epoch"],
                      "threads": summary["threads"]}))


@contextmanager
def busy_loops(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU beside the measured runs (ended by their pids)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def launch(mode: str, overrides: list[str], runs: int) -> subprocess.Popen[str]:
    if mode == "follow":  # the run itself must hold the setting its plan came from
        overrides = [*overrides, "train.threads=follow"]
    return subprocess.Popen([sys.executable, __file__, "--one", *overrides],
                            env=mode_env(mode, overrides, runs), stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)


def result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"a measured run failed (exit {proc.returncode})")
    return dict(json.loads(out.strip().splitlines()[-1]))


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ap.add_argument("--methods", default="ce,mfm")
    ap.add_argument("--modes", default="old,auto")
    ap.add_argument("--busy", default="0,1", help="busy-loop processes beside the run")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell (the median is shown)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--pairs", action="store_true",
                    help="also time two auto runs at once against one alone")
    ap.add_argument("--smoke", action="store_true", help="digits, tiny model, 1 epoch")
    args = ap.parse_args(argv)
    if args.one is not None:
        one(args.one)
        return
    epochs = 1 if args.smoke else args.epochs
    methods, modes = args.methods.split(","), args.modes.split(",")
    busy = [int(b) for b in args.busy.split(",")]
    print(f"# bench/threads.py {' '.join(argv if argv is not None else sys.argv[1:])}: "
          f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load before {load()}")
    print("| method | threads | " + " | ".join(f"{b} busy s/epoch" for b in busy)
          + (" | × quiet" if 0 in busy and len(busy) > 1 else "") + " | used |")
    print("|---|---|" + "---:|" * len(busy) + ("---:|" if 0 in busy and len(busy) > 1 else "")
          + "---|")
    for method in methods:
        overrides = run_overrides(method, smoke=args.smoke, epochs=epochs)
        for mode in modes:
            cells: list[float] = []
            used: dict[str, Any] = {}
            for b in busy:
                with busy_loops(b):
                    times = []
                    for _ in range(args.repeat):
                        r = result(launch(mode, overrides, 1))
                        times.append(float(r["seconds_per_epoch"]))
                        used = r["threads"]
                cells.append(statistics.median(times))
            ratio = ""
            if 0 in busy and len(busy) > 1:
                q = cells[busy.index(0)]
                ratio = " | " + " / ".join(f"{c / q:.2f}" for b, c in zip(busy, cells) if b)
            follow = (f", following the load ({'/'.join(map(str, used['used']))})"
                      if used.get("follows_load") else "")
            print(f"| {method} | {mode} | " + " | ".join(f"{c:.2f}" for c in cells) + ratio
                  + f" | {used['threads']} thread(s), {used['policy']}{follow} |", flush=True)
    if args.pairs:
        print()
        print("| method | one run alone s/epoch | two at once s/epoch (each) | throughput × one |")
        print("|---|---:|---:|---:|")
        for method in methods:
            overrides = run_overrides(method, smoke=args.smoke, epochs=epochs)
            alone = float(result(launch("auto", overrides, 1))["seconds_per_epoch"])
            pair = [launch("auto", overrides, 2) for _ in range(2)]
            each = [float(result(p)["seconds_per_epoch"]) for p in pair]
            print(f"| {method} | {alone:.2f} | {' / '.join(f'{e:.2f}' for e in each)} | "
                  f"{2 * alone / statistics.mean(each):.2f} |", flush=True)
    print(f"# load after {load()}")


if __name__ == "__main__":
    main()
