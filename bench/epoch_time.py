"""Seconds per training epoch of CIFAR-shaped random data, and the throughput of N runs at once.

The data: ``--images`` random 3x32x32 images (12,406 by default: CIFAR-10-LT at IF 100) with
long-tailed labels over 10 classes, resident on the device, in batches of ``--batch``; the
step: the engine's ``train_one_epoch`` with the method's real training step (data loading and
augmentation are not part of it). The first epoch warms up (cuDNN autotuning, compilation)
and is not counted.

    python bench/epoch_time.py --device cuda                       # ce and mfm on ResNet-32
    python bench/epoch_time.py --device cuda --amp bf16 --channels-last
    python bench/epoch_time.py --device cuda --concurrent 1,4,8    # N processes at once
    python bench/epoch_time.py --device cpu --smoke                # seconds, for the tests
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROJECT_EPOCHS = 200


def overrides(method: str, args: argparse.Namespace) -> list[str]:
    return [f"method.name={method}", f"model.name={args.model}", f"train.batch_size={args.batch}",
            f"train.epochs={PROJECT_EPOCHS}", f"train.amp={args.amp}",
            f"train.channels_last={str(args.channels_last).lower()}",
            f"train.compile={args.compile if method not in ('mfm', 'mwnet') else 'off'}",
            f"device={args.device}"]


def time_epochs(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Train ``args.epochs`` + 1 epochs in this process; seconds of the timed ones."""
    import torch

    from mfm.config import load_config
    from mfm.engine import Callbacks, seed_everything
    from mfm.engine.threads import apply_threads
    from mfm.engine.training import (
        build_model,
        build_optimizer,
        compile_for_training,
        step_settings,
        train_one_epoch,
    )
    from mfm.methods import create_method

    cfg = load_config(None, overrides(method, args))
    device = torch.device(args.device)
    apply_threads(cfg.train.threads)
    seed_everything(0, device)
    classes = 10
    counts = [max(1, round(args.images * 0.01 ** (c / (classes - 1)) / 2.97)) for c in
              range(classes)]
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])[:args.images]
    y = y[torch.randperm(len(y))].to(device)
    x = torch.randn(len(y), 3, 32, 32, device=device)
    method = create_method(cfg, counts)
    model = build_model(cfg, method, num_classes=classes, in_channels=3, device=device)
    method.attach(model=model, meta_x=torch.randn(10 * classes, 3, 32, 32, device=device),
                  meta_y=torch.arange(10 * classes, device=device) % classes, device=device)
    opt = build_optimizer(cfg, model)
    settings, train_model = step_settings(cfg, device), compile_for_training(cfg, model)
    batches = [(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(y), args.batch)]
    seconds = []
    step = 0
    for epoch in range(args.epochs + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        _, step = train_one_epoch(train_model, method, opt, batches, epoch=epoch,
                                  global_step=step, log_every=10**9, callbacks=Callbacks(),
                                  settings=settings)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if epoch > 0:
            seconds.append(time.perf_counter() - t0)
    return {"seconds_per_epoch": statistics.median(seconds), "images": float(len(y))}


def concurrent(method: str, n: int, args: argparse.Namespace) -> float:
    """N processes of one run each, started together: images per second over all of them."""
    from mfm.config import config_to_dict, load_config
    from mfm.runner.threads import child_env

    cmd = [sys.executable, __file__, "--one", method, *_passthrough(args)]
    # the thread plan the supervisor gives each of N runs on this host (--per-gpu N)
    env, _ = child_env(config_to_dict(load_config(None, overrides(method, args))), runs=n)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
             for _ in range(n)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode != 0 for p in procs):
        raise SystemExit(f"a concurrent run failed: {[p.returncode for p in procs]}")
    results = [json.loads(o.strip().splitlines()[-1]) for o in outs]
    # each process reports its own steady epochs (after a warm-up epoch, so they overlap)
    return sum(r["images"] / r["seconds_per_epoch"] for r in results)


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = ["--device", args.device, "--model", args.model, "--images", str(args.images),
           "--batch", str(args.batch), "--epochs", str(args.epochs), "--amp", args.amp,
           "--compile", args.compile]
    return out + (["--channels-last"] if args.channels_last else [])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="resnet32")
    ap.add_argument("--methods", default="ce,mfm")
    ap.add_argument("--images", type=int, default=12406)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs after one warm-up")
    ap.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", default="off", choices=("off", "plain"))
    ap.add_argument("--concurrent", default=None, help="e.g. 1,4,8: runs at once (ce only)")
    ap.add_argument("--smoke", action="store_true", help="256 images, resnet8, 1 timed epoch")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:
        args.images, args.model, args.epochs, args.batch = 256, "resnet8", 1, 64
    if args.one is not None:
        print(json.dumps(time_epochs(args.one, args)))
        return
    setting = (f"{args.model}, {args.images} random 3x32x32 images, batch {args.batch}, "
               f"{args.device}, amp {args.amp}, channels_last {args.channels_last}, "
               f"compile {args.compile} (plain step only)")
    if args.concurrent:
        ns = [int(n) for n in args.concurrent.split(",")]
        print(f"# throughput of N runs at once (one process each), ce, {setting}")
        print("| runs at once | images / s (all) | × one run |")
        print("|---:|---:|---:|")
        base = None
        for n in ns:
            ips = concurrent("ce", n, args)
            base = base or ips
            print(f"| {n} | {ips:.0f} | {ips / base:.2f} |", flush=True)
        return
    print(f"# seconds per epoch, {setting}; median of {args.epochs} after 1 warm-up")
    print(f"| method | s / epoch | projected {PROJECT_EPOCHS} epochs |")
    print("|---|---:|---:|")
    for method in args.methods.split(","):
        cmd = [sys.executable, __file__, "--one", method, *_passthrough(args)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["?"])[-1]
            print(f"| {method} | failed: {tail[:120]} | |", flush=True)
            continue
        s = json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_epoch"]
        total = s * PROJECT_EPOCHS
        print(f"| {method} | {s:.2f} | {total / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
