"""Time one training iteration of ce, mwnet and mfm variants on one batch and model.

For each variant: the median over >= 20 iterations after warm-up, as a ratio to ce. With
meta_interval k the unit is a window of k iterations (one meta step + k-1 plain steps) divided
by k, so the median is the amortised cost. Peak memory: on CUDA the allocator's peak for the
variant; on the CPU each variant runs in a fresh subprocess and reports its peak RSS (which
includes the ~0.4 GB of the torch import itself).

    python bench/step_time.py                      # ResNet-32, 28x28, batch 100, CPU
    python bench/step_time.py --device cuda --iters 50
    python bench/step_time.py --phases             # where the exact MFM step spends its time
    python bench/step_time.py --device cuda --amp bf16 --channels-last
    python bench/step_time.py --device cuda --compile plain   # the plain step (ce) compiled

``--amp`` / ``--channels-last`` / ``--compile`` time the steps as train.amp /
train.channels_last / train.compile run them (mfm.engine.training.step_settings); compile
applies to the plain step only: the bilevel rows say n/a.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mfm.config import load_config  # noqa: E402
from mfm.engine.training import compile_for_training, step_settings  # noqa: E402
from mfm.methods import create_method  # noqa: E402
from mfm.models import create_model  # noqa: E402

# Every MFM row names its step (meta_interval, virtual_params) itself, whatever the defaults are.
_EXACT = ["mfm.meta_interval=1", "mfm.virtual_params=all"]
_BN = ["mfm.sites=bn", "mfm.modulator=free"]
VARIANTS = [
    ("ce", []),
    ("mfm bn free, before meta_start (no meta step)", [*_BN, *_EXACT, "mfm.meta_start_epoch=1"]),
    ("mwnet", []),
    ("mfm penultimate exact (interval 1, virtual=all)", ["mfm.sites=penultimate", *_EXACT]),
    ("mfm stage free", ["mfm.sites=stage", "mfm.modulator=free", *_EXACT]),
    ("mfm bn free (exact)", [*_BN, *_EXACT]),
    ("mfm bn free reuse_virtual_grads", [*_BN, *_EXACT, "mfm.reuse_virtual_grads=true"]),
    ("mfm bn free virtual=last_stage", [*_BN, "mfm.meta_interval=1",
                                        "mfm.virtual_params=last_stage"]),
    ("mfm bn free virtual=fc", [*_BN, "mfm.meta_interval=1", "mfm.virtual_params=fc"]),
    ("mfm bn free interval 5", [*_BN, "mfm.meta_interval=5", "mfm.virtual_params=all"]),
    ("mfm penultimate interval 5", ["mfm.meta_interval=5", "mfm.virtual_params=all"]),
    ("mfm penultimate interval 10 virtual=fc", ["mfm.meta_interval=10", "mfm.virtual_params=fc"]),
    ("mfm penultimate interval 10 virtual=last_stage", ["mfm.meta_interval=10",
                                                        "mfm.virtual_params=last_stage"]),
    ("mfm penultimate interval 5 virtual=fc", ["mfm.meta_interval=5", "mfm.virtual_params=fc"]),
]


def time_variant(name: str, overrides: list[str], *, model_name: str, size: int, channels: int,
                 batch: int, classes: int, iters: int, warmup: int,
                 device: torch.device, execution: tuple[str, ...] = ()) -> tuple[float, float]:
    method_name = name.split()[0]
    cfg = load_config(None, [f"method.name={method_name}", f"model.name={model_name}",
                             f"train.batch_size={batch}", "train.epochs=100", *overrides,
                             *execution])
    counts = [max(1, int(500 * (0.01 ** (c / (classes - 1))))) for c in range(classes)]
    torch.manual_seed(0)
    method = create_method(cfg, counts)
    model = create_model(model_name, num_classes=classes, in_channels=channels).to(device)
    settings = step_settings(cfg, device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = settings.batch(torch.randn(batch, channels, size, size, device=device))
    y = torch.randint(0, classes, (batch,), device=device)
    method.attach(model=model, meta_x=torch.randn(batch, channels, size, size, device=device),
                  meta_y=torch.arange(batch, device=device) % classes, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                          weight_decay=5e-4, foreach=True)
    model.train()
    step_model = compile_for_training(cfg, model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    interval = cfg.mfm.meta_interval if method_name == "mfm" else (
        cfg.mwnet.meta_interval if method_name == "mwnet" else 1)
    times = []
    step = 0
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for _ in range(interval):
            with settings.context():
                out = method.training_step(step_model, opt, x, y, epoch=0, step=step)
            step += 1
        float(out["loss"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) / interval)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return statistics.median(times), peak


def phases(*, model_name: str, size: int, channels: int, batch: int, classes: int,
           iters: int, warmup: int) -> None:
    """Cumulative timings of the exact step (mfm bn free, virtual_params all) on the CPU: each
    line adds one phase to the previous line's work, so differences are the phases' costs."""
    from mfm.meta.bilevel import buffer_copies, virtual_step

    cfg = load_config(None, ["method.name=mfm", f"model.name={model_name}", "mfm.sites=bn",
                             "mfm.modulator=free", f"train.batch_size={batch}",
                             "train.epochs=100"])
    counts = [max(1, int(500 * (0.01 ** (c / (classes - 1))))) for c in range(classes)]
    torch.manual_seed(0)
    method = create_method(cfg, counts)
    model = create_model(model_name, num_classes=classes, in_channels=channels)
    x, y = torch.randn(batch, channels, size, size), torch.randint(0, classes, (batch,))
    method.attach(model=model, meta_x=torch.randn(batch, channels, size, size),
                  meta_y=torch.arange(batch) % classes, device=torch.device("cpu"))
    model.train()
    train_loss, meta_loss, _, _ = method.closures(model, x, y, method.meta_x, method.meta_y,
                                                  epoch=0)
    params, names = dict(model.named_parameters()), method.virtual_names

    def median(fn) -> float:
        ts = []
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    def ce_step():
        torch.nn.functional.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)

    def virtual():
        return virtual_step(params, buffer_copies(model), train_loss, 0.1, names)

    def with_meta_forward():
        return meta_loss(virtual()[0], buffer_copies(model))

    def with_meta_backward():
        return torch.autograd.grad(with_meta_forward(), method.meta_params)

    ce = median(ce_step)
    print(f"# {model_name}, {channels}x{size}x{size}, batch {batch}, cpu, "
          f"{torch.get_num_threads()} threads, median of {iters} after {warmup} warm-up")
    print("| phases (cumulative) | ms | × ce iteration |")
    print("|---|---:|---:|")
    for label, fn in (("ce iteration (forward + backward)", ce_step),
                      ("virtual forward + backward (graph kept)", virtual),
                      ("+ meta forward at the virtual weights", with_meta_forward),
                      ("+ meta backward through the virtual step", with_meta_backward)):
        t = ce if fn is ce_step else median(fn)
        print(f"| {label} | {1000 * t:.0f} | {t / ce:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet32")
    ap.add_argument("--size", type=int, default=28)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default=None, help="comma-separated substrings of variant names")
    ap.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"))
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", default="off", choices=("off", "plain"),
                    help="torch.compile the plain step (the bilevel rows say n/a)")
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phases", action="store_true",
                    help="time the phases of the exact MFM step instead (CPU)")
    args = ap.parse_args(argv)
    if args.phases:
        phases(model_name=args.model, size=args.size, channels=args.channels, batch=args.batch,
               classes=args.classes, iters=args.iters, warmup=args.warmup)
        return
    device = torch.device(args.device)
    execution = (f"train.amp={args.amp}", f"train.channels_last={str(args.channels_last).lower()}",
                 f"train.compile={args.compile}")
    variants = VARIANTS
    if args.only:
        keys = args.only.split(",")
        variants = [v for v in VARIANTS if v[0] == "ce" or any(k in v[0] for k in keys)]
    if args.variant is not None:
        variants = [v for v in VARIANTS if v[0] == args.variant]
        for name, overrides in variants:
            t, peak = time_variant(name, overrides, model_name=args.model, size=args.size,
                                   channels=args.channels, batch=args.batch,
                                   classes=args.classes, iters=args.iters, warmup=args.warmup,
                                   device=device, execution=execution)
            print(t, peak)
        return
    print(f"# {args.model}, {args.channels}x{args.size}x{args.size}, batch {args.batch}, "
          f"{args.device}, amp {args.amp}, channels_last {args.channels_last}, compile "
          f"{args.compile}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    print(f"# median of {args.iters} iterations after {args.warmup} warm-up")
    print("| variant | ms / iteration | × ce | peak MiB |")
    print("|---|---:|---:|---:|")
    base = None
    for name, overrides in variants:
        if args.compile != "off" and name.split()[0] in ("mfm", "mwnet"):
            print(f"| {name} | n/a: the bilevel step is not compiled (double backward) | | |",
                  flush=True)
            continue
        if args.variant is None and device.type == "cpu":
            # a fresh process per variant, so the RSS peak belongs to that variant
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                   "--variant", name]
            line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            t, peak = (float(v) for v in line.split())
        else:
            t, peak = time_variant(name, overrides, model_name=args.model, size=args.size,
                                   channels=args.channels, batch=args.batch,
                                   classes=args.classes, iters=args.iters, warmup=args.warmup,
                                   device=device, execution=execution)
        base = base or t
        print(f"| {name} | {1000 * t:.1f} | {t / base:.2f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
