"""Accuracy and cost of every method on long-tailed data, through the same engine.

Every (dataset spec × method × seed) runs headless and is recorded in a database of its own;
an interrupted study picks up where it stopped (finished runs are skipped, interrupted ones
resumed from their checkpoints). The Markdown table — mean ± std over seeds of final-epoch
overall / many / medium / few accuracy, best-epoch accuracy (labelled: it is chosen on the test
split), and seconds per epoch — goes into docs/BENCHMARKS.md with the command, machine, date.

    python bench/longtail.py --profile cpu            # the default study (this machine: long)
    python bench/longtail.py --profile quick          # digits-LT only, minutes
    python bench/longtail.py --profile cifar --data-root ~/data   # GPU protocol (METHOD.md)
    python bench/longtail.py --profile ablation      # every MFM variant validation accepts
    python bench/longtail.py --profile transfer      # a trained modulator reused elsewhere
    python bench/longtail.py --profile select        # the ablation's leaders, 3 seeds, by val

A study is a list of dataset specs × arms × seeds; an arm is a method with its overrides (the
plain profiles have one arm per method). The ablation and transfer profiles hold out a balanced
validation split (data.val_per_class) from the training data and report its accuracy, so a
variant can be chosen without looking at the test split.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALL_METHODS = ("ce", "focal", "cb", "ldam_drw", "balanced_softmax", "mwnet", "mfm")


@dataclass(frozen=True)
class Spec:
    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Arm:
    """One column of a study: a label, its overrides, the specs it runs on (empty = all), and
    for a transfer arm the (spec, arm label) whose finished run's modulator it loads."""

    label: str
    overrides: tuple[str, ...]
    specs: tuple[str, ...] = ()
    modulator_of: tuple[str, str] | None = None


@dataclass(frozen=True)
class Profile:
    specs: tuple[Spec, ...]
    model: str
    epochs: int
    seeds: int
    methods: tuple[str, ...] = ALL_METHODS
    common: tuple[str, ...] = ()
    note: str = ""
    extra: dict = field(default_factory=dict)
    arms: tuple[Arm, ...] = ()  # empty: one arm per method

    def arm_list(self, methods: tuple[str, ...] | None = None) -> tuple[Arm, ...]:
        if self.arms:
            return tuple(a for a in self.arms if not methods or a.label in methods)
        return tuple(Arm(m, (f"method.name={m}",)) for m in (methods or self.methods))


# Fashion-MNIST-LT with the head class capped at 500 training images (data.head_count), so the
# study of every method fits a 2-core CPU; thresholds scaled to match (many > 100, few < 20).
FMNIST = ("data.name=fashion-mnist", "data.profile=exp", "data.meta_per_class=10",
          "data.head_count=500", "train.many_threshold=100", "train.few_threshold=20")
DIGITS = ("data.name=digits", "data.profile=exp", "data.meta_per_class=10",
          "train.many_threshold=60", "train.few_threshold=20")
CIFAR = ("data.meta_per_class=10", "data.profile=exp")

PROFILES: dict[str, Profile] = {
    "cpu": Profile(
        specs=(Spec("fashion-mnist-LT IF100", (*FMNIST, "data.imbalance_factor=100")),
               Spec("fashion-mnist-LT IF10", (*FMNIST, "data.imbalance_factor=10")),
               Spec("digits-LT IF10", (*DIGITS, "data.imbalance_factor=10"))),
        model="resnet8", epochs=15, seeds=3,
        note="ResNet-8, 15 epochs, lr 0.1 x0.1 at 80 and 90 % of the epochs, batch 100; "
             "Fashion-MNIST-LT with the head class capped at 500 training images "
             "(data.head_count=500; tail 5 at IF100, 50 at IF10), thresholds many > 100, "
             "few < 20; digits-LT thresholds many > 60, few < 20. Sized so the whole study "
             "fits about an hour of a 2-core CPU"),
    "quick": Profile(
        specs=(Spec("digits-LT IF10", (*DIGITS, "data.imbalance_factor=10")),),
        model="resnet20", epochs=30, seeds=3,
        note="ResNet-20, batch 100 on digits-LT (thresholds: many > 60, few < 20)"),
    "cifar": Profile(
        specs=tuple(Spec(f"{n}-LT IF{f}", (f"data.name={n}", *CIFAR, f"data.imbalance_factor={f}"))
                    for n in ("cifar10", "cifar100") for f in (200, 100, 50)),
        model="resnet32", epochs=100, seeds=1, methods=("ce", "cb", "mwnet", "mfm"),
        common=("optim.lr=0.1", "optim.milestones=0.8,0.9", "train.batch_size=100"),
        note="Meta-Weight-Net's protocol: ResNet-32, lr 0.1 x0.1 at 80 and 90 % of the epochs, "
             "batch 100, 10 meta images per class (METHOD.md); compare with the MW-Net paper's "
             "table"),
}


# The ablation, select and transfer studies ran when mfm.base_loss defaulted to ce; their MFM
# arms pin it so that rerunning them reproduces the recorded tables (the select study moved the
# default to balanced_softmax, docs/METHOD.md "Defaults and the evidence").
CE_LOSS = "mfm.base_loss=ce"


def _ablation_arms() -> tuple[Arm, ...]:
    """Every MFM variant that validation accepts (sites × form × source/inputs × apply), then
    one-at-a-time changes of the default, and a reference ce / balanced_softmax."""
    import itertools

    from mfm.config import ConfigError, load_config

    arms = [Arm("ce", ("method.name=ce",)),
            Arm("balanced_softmax", ("method.name=balanced_softmax",))]
    sources = (("network", "loss_freq"), ("network", "features"), ("free", None),
               ("free_per_class", None))
    for site, form, (src, inputs), apply in itertools.product(
            ("penultimate", "stage", "bn"), ("scale", "scale_shift"), sources,
            ("train", "everywhere")):
        over = ("method.name=mfm", CE_LOSS, f"mfm.sites={site}", f"mfm.form={form}",
                f"mfm.modulator={src}", f"mfm.apply={apply}",
                *((f"mfm.inputs={inputs}",) if inputs else ()))
        try:
            load_config(None, list(over))
        except ConfigError:
            continue  # the label-shortcut rule (METHOD.md) refuses it
        label = f"mfm {site} {form} {src}{'/' + inputs if inputs else ''} {apply}"
        arms.append(Arm(label, over))
    for label, over in (("mfm default, meta_interval 5", ("mfm.meta_interval=5",)),
                        ("mfm default, virtual_params last_stage",
                         ("mfm.virtual_params=last_stage",)),
                        ("mfm default, virtual_params fc", ("mfm.virtual_params=fc",)),
                        ("mfm default, meta lr constant",
                         ("mfm.meta_lr_follows_schedule=false",)),
                        ("mfm default on balanced_softmax's loss",
                         ("mfm.base_loss=balanced_softmax",)),
                        # what the label-shortcut rule refuses, measured (METHOD.md)
                        ("SHORTCUT mfm bn scale_shift free_per_class train",
                         ("mfm.sites=bn", "mfm.form=scale_shift", "mfm.modulator=free_per_class",
                          "mfm.allow_label_shortcut=true")),
                        ("SHORTCUT mfm stage scale free_per_class train",
                         ("mfm.sites=stage", "mfm.modulator=free_per_class",
                          "mfm.allow_label_shortcut=true")),
                        ("SHORTCUT mfm penultimate scale_shift free_per_class train",
                         ("mfm.form=scale_shift", "mfm.modulator=free_per_class",
                          "mfm.allow_label_shortcut=true"))):
        arms.append(Arm(label, ("method.name=mfm", CE_LOSS, *over)))
    return tuple(arms)


FM100 = Spec("fashion-mnist-LT IF100", (*FMNIST, "data.imbalance_factor=100"))
DIG10 = Spec("digits-LT IF10", (*DIGITS, "data.imbalance_factor=10"))
VAL = ("data.val_per_class=20",)
PROFILES["ablation"] = Profile(
    specs=(Spec(FM100.name, (*FM100.overrides, *VAL)),), model="resnet8", epochs=8, seeds=1,
    note="ResNet-8, 8 epochs, 1 seed, Fashion-MNIST-LT IF100 (head 500), 20 validation images "
         "per class held out of the training data", extra={"lazy_arms": _ablation_arms})
BS_LOSS = "mfm.base_loss=balanced_softmax"
BN_FREE = ("mfm.sites=bn", "mfm.form=scale_shift", "mfm.modulator=free")
STAGE_FREE = ("mfm.sites=stage", "mfm.form=scale_shift", "mfm.modulator=free")
PEN_FEAT = ("mfm.form=scale_shift", "mfm.inputs=features")
# The ablation's leaders on the validation split, re-run longer and over 3 seeds, to choose the
# defaults of METHOD.md's choices by validation accuracy (never by the test split).
PROFILES["select"] = Profile(
    specs=(Spec(FM100.name, (*FM100.overrides, *VAL)),), model="resnet8", epochs=15, seeds=3,
    note="ResNet-8, 15 epochs, 3 seeds, Fashion-MNIST-LT IF100 (head 500), 20 validation images "
         "per class held out of the training data; the ablation's leaders by validation accuracy",
    arms=(Arm("ce", ("method.name=ce",)),
          Arm("balanced_softmax", ("method.name=balanced_softmax",)),
          Arm("mfm default (penultimate scale network/loss_freq)", ("method.name=mfm", CE_LOSS)),
          Arm("mfm penultimate scale_shift network/features",
              ("method.name=mfm", CE_LOSS, *PEN_FEAT)),
          Arm("mfm stage scale_shift free", ("method.name=mfm", CE_LOSS, *STAGE_FREE)),
          Arm("mfm bn scale_shift free", ("method.name=mfm", CE_LOSS, *BN_FREE)),
          Arm("mfm default on balanced_softmax's loss", ("method.name=mfm", BS_LOSS)),
          Arm("mfm penultimate scale_shift network/features on balanced_softmax's loss",
              ("method.name=mfm", *PEN_FEAT, BS_LOSS)),
          Arm("mfm bn scale_shift free on balanced_softmax's loss",
              ("method.name=mfm", *BN_FREE, BS_LOSS))))
# The cpu study's MFM arm again, with the defaults the select study chose (base_loss
# balanced_softmax); the cpu table's mfm row was measured on ce's loss, the default then. ce and
# balanced_softmax again beside it, so one database holds the per-class picture's three runs.
PROFILES["cpu-mfm"] = Profile(
    specs=PROFILES["cpu"].specs, model="resnet8", epochs=15, seeds=3,
    note=PROFILES["cpu"].note + "; MFM with today's defaults beside ce and balanced_softmax",
    arms=(Arm("ce", ("method.name=ce",)),
          Arm("balanced_softmax", ("method.name=balanced_softmax",)),
          Arm("mfm (defaults: on balanced_softmax's loss)", ("method.name=mfm",))))
PROFILES["transfer"] = Profile(
    specs=(Spec(FM100.name, (*FM100.overrides, *VAL)), Spec(DIG10.name, (*DIG10.overrides,
                                                                          "data.val_per_class=5"))),
    model="resnet8", epochs=8, seeds=1,
    note="ResNet-8, 8 epochs, 1 seed; the modulator network (MFM's defaults of the time: "
         "penultimate scale from loss and class frequency, on ce's loss) trained on one dataset, "
         "frozen on the other",
    arms=(Arm("ce", ("method.name=ce",)),
          Arm("mfm (trained here)", ("method.name=mfm", CE_LOSS)),
          Arm("mfm, modulator from fashion-mnist-LT IF100", ("method.name=mfm", CE_LOSS),
              specs=(DIG10.name,), modulator_of=(FM100.name, "mfm (trained here)")),
          Arm("mfm, modulator from digits-LT IF10", ("method.name=mfm", CE_LOSS),
              specs=(FM100.name,), modulator_of=(DIG10.name, "mfm (trained here)"))))

# Why does a modulator from digits-LT hurt on Fashion-MNIST-LT IF100? Our hypothesis: its
# log-frequency input saw only IF 10's range. A modulator from Fashion-MNIST-LT IF10 (same
# images, same range as digits) separates range from domain; 3 seeds.
FM10 = Spec("fashion-mnist-LT IF10", (*FMNIST, "data.imbalance_factor=10"))
PROFILES["transfer-range"] = Profile(
    specs=(Spec(FM100.name, (*FM100.overrides, *VAL)), Spec(FM10.name, (*FM10.overrides, *VAL)),
           Spec(DIG10.name, (*DIG10.overrides, "data.val_per_class=5"))),
    model="resnet8", epochs=8, seeds=3,
    note="ResNet-8, 8 epochs, 3 seeds; modulator networks (penultimate scale from loss and class "
         "frequency, on ce's loss) trained on Fashion-MNIST-LT IF10 or digits-LT IF10 and frozen "
         "on Fashion-MNIST-LT IF100, against ce and MFM trained there",
    arms=(Arm("ce", ("method.name=ce",), specs=(FM100.name,)),
          Arm("mfm (trained here)", ("method.name=mfm", CE_LOSS)),
          Arm("mfm, modulator from fashion-mnist-LT IF10", ("method.name=mfm", CE_LOSS),
              specs=(FM100.name,), modulator_of=(FM10.name, "mfm (trained here)")),
          Arm("mfm, modulator from digits-LT IF10", ("method.name=mfm", CE_LOSS),
              specs=(FM100.name,), modulator_of=(DIG10.name, "mfm (trained here)"))))


def job_name(profile: str, spec: Spec, method: str, seed: int) -> str:
    return f"{profile}/{spec.name}/{method}/s{seed}"


def profile_arms(prof: Profile, methods: tuple[str, ...] | None) -> tuple[Arm, ...]:
    if "lazy_arms" in prof.extra:
        arms = prof.extra["lazy_arms"]()
        return tuple(a for a in arms if not methods or a.label in methods)
    return prof.arm_list(methods)


def run_study(args: argparse.Namespace) -> list[dict]:
    import torch

    from mfm.config import config_to_dict, load_config
    from mfm.runner.child import LogLines
    from mfm.runner.execute import execute_run
    from mfm.runner.preflight import method_options
    from mfm.store import Database, repo

    prof = PROFILES[args.profile]
    methods = tuple(args.methods.split(",")) if args.methods else None
    seeds = args.seeds or prof.seeds
    epochs = args.epochs or prof.epochs
    model = args.model or prof.model
    db = Database(args.db)
    runs_dir = Path(args.runs_dir).resolve()
    existing = {r.name: r for r in repo.list_runs(db)}
    rows = []
    specs = [s for s in prof.specs if not args.specs or s.name in args.specs.split(",")]
    arms = profile_arms(prof, methods)
    jobs = [(spec, arm, seed) for spec in specs for arm in arms for seed in range(seeds)
            if not arm.specs or spec.name in arm.specs]
    # transfer arms go last: they load a modulator another job of this study trains
    jobs.sort(key=lambda j: j[1].modulator_of is not None)
    by_name = {s.name: s for s in prof.specs}
    for spec, arm, seed in jobs:
        name = job_name(args.profile, spec, arm.label, seed)
        source = []
        if arm.modulator_of is not None:
            src_spec, src_arm = arm.modulator_of
            src_name = job_name(args.profile, by_name[src_spec], src_arm, seed)
            src = next((r for r in repo.list_runs(db) if r.name == src_name), None)
            if src is None or src.status != "completed":
                raise SystemExit(f"{name}: its source run {src_spec} / {src_arm} is not "
                                 "completed; run the study without --specs/--methods filters")
            source = [f"mfm.modulator_from={src.id}"]
        overrides = [*spec.overrides, *prof.common, f"model.name={model}",
                     f"train.epochs={epochs}", *arm.overrides, *source,
                     f"seed={seed}", f"data.seed={seed}", f"device={args.device}",
                     *(["data.root=" + args.data_root] if args.data_root else []),
                     *args.set]
        cfg = load_config(None, overrides)
        rec = existing.get(name)
        row = {"spec": spec.name, "method": arm.label, "seed": seed}
        if rec is not None and rec.status == "completed":
            rows.append({**row, "run": rec})
            continue
        if rec is None:
            run_id = repo.create_run(db, config=config_to_dict(cfg), epochs_total=epochs,
                                     name=name)
            resume = False
        else:
            run_id, resume = rec.id, True
            repo.update_run(db, run_id, status="created")
        ckpt = runs_dir / str(run_id)
        repo.update_run(db, run_id, checkpoint_dir=str(ckpt))
        print(f"== {name} (run {run_id}{', resuming' if resume else ''})", flush=True)
        out = execute_run(db, run_id, checkpoint_dir=ckpt, resume=resume,
                          extra_callbacks=(LogLines(),) if args.verbose else (),
                          method_options=method_options(db, cfg))
        if out.status != "completed":
            print(out.error or out.status, file=sys.stderr)
            raise SystemExit(f"{name} {out.status}; rerun the same command to resume")
        rows.append({**row, "run": repo.get_run(db, run_id)})
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    order = {a.label: i for i, a in enumerate(arms)}
    spec_order = {s.name: i for i, s in enumerate(specs)}
    rows.sort(key=lambda r: (spec_order[r["spec"]], order[r["method"]], r["seed"]))
    return rows


def _ms(values: list[float]) -> str:
    vals = [100 * v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def table(rows: list[dict]) -> str:
    with_val = any("val_acc" in r["run"].summary["final"] for r in rows)
    val_head = ("val acc‡ | ", "---:|") if with_val else ("", "")
    lines = [f"| dataset | method | {val_head[0]}final acc | many | medium | few | "
             "best-epoch acc† | s/epoch | seeds |",
             f"|---|---|{val_head[1]}---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r["spec"], r["method"]), []).append(r["run"])
    for (spec, method), runs in groups.items():
        fin = [r.summary["final"] for r in runs]
        best = [r.summary["best"]["acc"] for r in runs]
        spe = [r.summary["seconds_per_epoch"] for r in runs if r.summary.get("seconds_per_epoch")]
        sec = f"{statistics.mean(spe):.2f}" if spe else "—"
        val = f"{_ms([f.get('val_acc') for f in fin])} | " if with_val else ""
        lines.append(f"| {spec} | {method} | {val}{_ms([f['acc'] for f in fin])} | "
                     f"{_ms([f.get('many') for f in fin])} | {_ms([f.get('medium') for f in fin])} "
                     f"| {_ms([f.get('few') for f in fin])} | {_ms(best)} | {sec} | {len(runs)} |")
    return "\n".join(lines)


def machine() -> str:
    import torch

    dev = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
           else f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    return f"{dev}, torch {torch.__version__}, Python {platform.python_version()}"


def write_section(path: Path, key: str, text: str) -> None:
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    ap.add_argument("--db", default=str(ROOT / "bench-longtail.db"))
    ap.add_argument("--runs-dir", default=str(ROOT / "runs-bench"))
    ap.add_argument("--methods", default=None, help="comma-separated (default: the profile's)")
    ap.add_argument("--specs", default=None, help="comma-separated dataset spec names "
                    "(default: all of the profile's)")
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    ap.add_argument("--verbose", action="store_true", help="print every epoch")
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    rows = run_study(args)
    prof = PROFILES[args.profile]
    cmd = "python bench/longtail.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = (f"### Long-tail study, profile `{args.profile}`\n\n"
            f"Command: `{cmd.strip()}`  \nMachine: {machine()}  \n"
            f"Date: {started:%Y-%m-%d} (UTC)  \nSetting: {prof.note}. Seeds "
            f"{args.seeds or prof.seeds}; model {args.model or prof.model}; epochs "
            f"{args.epochs or prof.epochs}.\n\n{table(rows)}\n\n"
            "Accuracy in % on the balanced test split, mean ± std over seeds; **final epoch** "
            "is the main number. † best-epoch accuracy is picked on the test split and is "
            "shown only for comparison with papers that report it."
            + (" ‡ accuracy on the balanced validation split held out of the training data "
               "(data.val_per_class): the number to choose a variant by." if "‡" in table(rows)
               else "") + "\n")
    write_section(Path(args.out), f"longtail:{args.profile}", text)
    print(text)


if __name__ == "__main__":
    main()
