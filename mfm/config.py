"""Run configuration: typed, frozen dataclasses with validation. Torch-free.

A configuration is built from defaults, then an optional TOML file, then ``key=value``
overrides (``--set optim.lr=0.05``). Every key is dotted (``section.field``) except the
top-level ``seed`` and ``device``. Unknown keys are rejected with the valid keys listed;
every value is checked against the range its field declares, and the error names the key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfm.text import one_line, visible

__all__ = [
    "Config",
    "ConfigError",
    "DATASET_NAMES",
    "METHOD_NAMES",
    "MODEL_NAMES",
    "FieldInfo",
    "applies_to",
    "config_from_dict",
    "preset_values",
    "config_to_dict",
    "describe",
    "EXECUTION_KEYS",
    "LATE_KEYS",
    "identity_dict",
    "key_applies",
    "load_config",
    "parse_override",
    "read_toml",
]

DATASET_NAMES = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder",
                 "animal-mnist")
# Kept in step with mfm.models' registry by a test (this module must not import torch).
MODEL_NAMES = ("resnet8", "resnet20", "resnet32", "resnet44", "resnet56", "resnet_tiny")
METHOD_NAMES = ("ce", "focal", "cb", "ldam_drw", "balanced_softmax", "mwnet", "mfm", "la",
                "tau_norm")
META_METHODS = ("mwnet", "mfm")
# Methods with their own class re-weighting (method.reweight does not apply to them) and the
# stage-2 method that trains nothing.
OWN_WEIGHTING = ("cb", "ldam_drw", "tau_norm")
REWEIGHT_METHODS = tuple(n for n in METHOD_NAMES if n not in OWN_WEIGHTING)
# Methods whose prediction takes a tau that may be chosen on the validation split.
POSTHOC_METHODS = ("la", "tau_norm")
SAMPLERS = ("instance", "class_balanced", "sqrt")
TAU_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
MWNET_PRESETS = ("ours", "official")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")
# numpy's seeds are 32-bit; every other int is capped where SQLite and the UI stay sane.
SEED_MAX = 2**32 - 1
INT_MAX = 2**31 - 1
# A config error is one line; the unknown-key message lists every key, so the cap is wide.
_MESSAGE_MAX = 2000


def _show(value: Any, limit: int = 80) -> str:
    """A user's value inside a message: its repr, control characters visible, cut."""
    return visible(repr(value), limit=limit)


class ConfigError(ValueError):
    """A bad configuration value. ``str(err)`` is one line naming the key."""

    def __init__(self, key: str, message: str):
        self.key = visible(key, limit=80)
        self.message = one_line(message, limit=_MESSAGE_MAX)
        super().__init__(f"{self.key}: {self.message}" if key else self.message)


def _f(default: Any, help: str, *, choices: tuple[str, ...] | None = None, ge: float | None = None,
       gt: float | None = None, le: float | None = None, lt: float | None = None,
       methods: tuple[str, ...] | None = None, words: tuple[str, ...] | None = None) -> Any:
    """A field with its help text and the range validation enforces. ``words``: the strings a
    number-or-word field (type ``int | str``, e.g. ``train.threads = auto | N``) accepts."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "methods": methods, "words": words}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class DataConfig:
    name: str = _f("digits", "dataset source", choices=DATASET_NAMES)
    root: str = _f("", "folder holding the data ('' = the source's default location)")
    profile: str = _f("exp", "long-tail profile: exponential or step", choices=("exp", "step"))
    imbalance_factor: float = _f(10.0, "n_max / n_min of the training counts", ge=1.0)
    meta_per_class: int = _f(10, "balanced meta images per class, split off before subsampling "
                             "(with data.meta_source=resampled: drawn from the training images, "
                             "at most the class's training count)", ge=0)
    meta_source: str = _f("heldout", "meta set: held out of the source before the long-tail "
                          "subsampling, or resampled class-balanced from the long-tailed "
                          "training images every data.meta_resample_epochs epochs (then the "
                          "meta images are also training images)",
                          choices=("heldout", "resampled"))
    meta_resample_epochs: int = _f(5, "with data.meta_source=resampled: draw a new meta set "
                                   "every N epochs", ge=1)
    head_count: int = _f(0, "training images kept by the head class (n_max); 0 = all the source "
                         "has after the meta split", ge=0)
    val_per_class: int = _f(0, "balanced validation images per class, held out of training "
                            "after the meta draw (0 = none); runs report val_acc on them", ge=0)
    seed: int = _f(0, "seed of the split (meta draw, subsampling, class permutation)", ge=0,
                   le=SEED_MAX)
    step_mu: float = _f(0.5, "step profile: fraction of classes that keep n_max", gt=0.0, le=1.0)
    permute_classes: bool = _f(False, "seeded permutation of which class is the head")
    test_per_class: int = _f(50, "digits only: images per class in the seeded balanced test split",
                             ge=1)
    test_max_per_class: int = _f(0, "score on at most this many test images per class: a "
                                 "fixed (seed 0), class-balanced subset of the source's test "
                                 "split, the same for every run (0 = the whole test split; "
                                 "digits: see data.test_per_class)", ge=0)
    augment: str = _f("auto", "training augmentation (auto: crop+flip for natural images, "
                      "crop for digits/mnist)", choices=("auto", "none", "crop", "crop_flip"))
    pad: int = _f(-1, "crop padding in pixels (-1 = image size / 8)", ge=-1)
    image_size: int = _f(32, "imagefolder only: images are resized to this square size", ge=8)
    num_workers: int = _f(2, "imagefolder only: DataLoader worker processes", ge=0)
    sampler: str = _f("instance", "how training batches draw images: instance (every image once "
                      "per epoch, shuffled), class_balanced (with replacement, every class "
                      "equally likely: cRT), sqrt (with replacement, a class in proportion to "
                      "the square root of its count)", choices=SAMPLERS)


@dataclass(frozen=True)
class ModelConfig:
    name: str = _f("resnet20", "CIFAR-style ResNet by depth", choices=MODEL_NAMES)
    classifier: str = _f("auto", "last layer: linear, cosine (normed), or auto (cosine for "
                         "ldam_drw as in Cao et al., else linear)",
                         choices=("auto", "linear", "cosine"))


@dataclass(frozen=True)
class MethodConfig:
    name: str = _f("mfm", "training method (MFM by default: the method this workbench is "
                   "built around)", choices=METHOD_NAMES)
    focal_gamma: float = _f(1.0, "focal loss focusing parameter", ge=0.0,
                            methods=("focal", "cb"))
    cb_beta: float = _f(0.9999, "class-balanced effective-number beta (cb, ldam_drw's DRW, "
                        "method.reweight)", ge=0.0, lt=1.0)
    cb_loss: str = _f("ce", "loss re-weighted by cb", choices=("ce", "focal"), methods=("cb",))
    ldam_max_margin: float = _f(0.5, "LDAM: largest margin (rarest class)", gt=0.0,
                                methods=("ldam_drw",))
    ldam_scale: float = _f(30.0, "LDAM: logit scale s", gt=0.0, methods=("ldam_drw",))
    drw_start: float = _f(0.8, "deferred re-weighting (ldam_drw, method.reweight=drw) starts "
                          "at this fraction of the epochs", ge=0.0, le=1.0)
    reweight: str = _f("none", "class re-weighting of the training loss: none, cb (class-"
                       "balanced weights (1-beta)/(1-beta^n_c) summing to C, method.cb_beta, from "
                       "the start) or drw (the same weights from method.drw_start on); the "
                       "weighted mean divides by the batch's summed weights, as torch's "
                       "cross_entropy(weight=)", choices=("none", "cb", "drw"),
                       methods=REWEIGHT_METHODS)
    la_tau: float = _f(1.0, "logit adjustment tau (la; mfm with mfm.base_loss=la): the loss "
                       "adds tau*log(prior) to the logits (la_mode=loss) or prediction "
                       "subtracts it (la_mode=posthoc); tau=1 with la_mode=loss is balanced "
                       "softmax's loss", ge=0.0, methods=("la", "mfm"))
    la_mode: str = _f("loss", "la: adjust the logits in the training loss, or train plain "
                      "cross-entropy and adjust the prediction (posthoc)",
                      choices=("loss", "posthoc"), methods=("la",))
    norm_tau: float = _f(1.0, "tau_norm: prediction with classifier rows w_c/|w_c|^tau",
                         ge=0.0, methods=("tau_norm",))
    tau_select: str = _f("fixed", "la with la_mode=posthoc and tau_norm: use the tau set "
                         "(fixed), or choose it at every evaluation from method.tau_grid by "
                         "validation accuracy (val; needs data.val_per_class > 0)",
                         choices=("fixed", "val"), methods=POSTHOC_METHODS)
    tau_grid: tuple[float, ...] = _f(TAU_GRID, "the taus method.tau_select=val chooses from",
                                     ge=0.0, methods=POSTHOC_METHODS)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(30, "training epochs", ge=1)
    batch_size: int = _f(100, "training batch size", ge=1)
    eval_batch_size: int = _f(500, "evaluation batch size", ge=1)
    many_threshold: int = _f(100, "many-shot: classes with more training images than this", ge=0)
    few_threshold: int = _f(20, "few-shot: classes with fewer training images than this", ge=0)
    checkpoint: bool = _f(True, "write a checkpoint at the end of every epoch")
    log_every: int = _f(10, "record the training loss every N steps", ge=1)
    # How the run executes, not what it trains (EXECUTION_KEYS): left out of the run's identity.
    threads: int | str = _f("auto", "CPU threads of the run process: auto = the cores this "
                            "process may use (affinity, cgroup quota) divided among the runs its "
                            "supervisor runs at once on this host, with OpenMP waiting passively "
                            "(no spinning on shared cores); follow = auto, then fewer threads "
                            "while other processes keep its cores busy (faster on a shared "
                            "machine, but a run is then not bit-reproducible: float sums "
                            "depend on the thread count); N = exactly N threads", ge=1,
                            words=("auto", "follow"))
    amp: str = _f("off", "mixed precision of the training step: off (fp32), bf16 (autocast, "
                  "CPU and CUDA), fp16 (autocast, CUDA only, no loss scaling: prefer bf16)",
                  choices=("off", "bf16", "fp16"))
    channels_last: bool = _f(False, "keep the model's weights and the batches in channels_last "
                             "memory layout (faster convolutions on recent GPUs)")
    init_from: str = _f("", "start from another run's weights: a run id ('' = from "
                        "scratch); the parent must be completed, with the same model and class "
                        "count; in a sweep file, arm:NAME is the same seed's run of arm NAME")
    init_checkpoint: str = _f("last", "the parent's weights train.init_from loads: its last "
                              "epoch or its best (by validation)", choices=("last", "best"))
    reset_classifier: bool = _f(False, "with train.init_from: start the classifier from a "
                                "fresh initialisation instead of the parent's (cRT re-trains "
                                "it from scratch)")
    trainable: str = _f("all", "parameters the optimiser updates: all, or the classifier only "
                        "(the rest frozen, its BatchNorm statistics too: stage 2 of cRT and "
                        "weight balancing; needs train.init_from)",
                        choices=("all", "classifier"))
    compile: str = _f("off", "torch.compile the model for the plain training step (plain); "
                      "refused for mfm and mwnet: their bilevel step needs double backward, "
                      "which torch.compile's aot_autograd cannot trace (pytorch #92348, #183603)",
                      choices=("off", "plain"))


@dataclass(frozen=True)
class OptimConfig:
    lr: float = _f(0.1, "SGD learning rate", gt=0.0)
    momentum: float = _f(0.9, "SGD momentum", ge=0.0, lt=1.0)
    nesterov: bool = _f(True, "Nesterov momentum")
    weight_decay: float = _f(5e-4, "L2 weight decay", ge=0.0)
    milestones: tuple[float, ...] = _f((0.8, 0.9), "lr decay points as fractions of the epochs, "
                                       "strictly increasing in (0, 1) (0.8, 0.9 of 100 epochs = "
                                       "epochs 80 and 90)")
    lr_decay: float = _f(0.1, "multiplier applied to lr at each milestone", gt=0.0, le=1.0)
    warmup_epochs: int = _f(0, "linear lr warm-up epochs", ge=0)
    schedule: str = _f("step", "lr schedule after the warm-up: step (optim.milestones, "
                       "optim.lr_decay) or cosine (to 0 at the end of training)",
                       choices=("step", "cosine"))
    sam: str = _f("none", "sharpness-aware step around the real optimiser: none, sam (Foret et "
                  "al.: gradient at w + rho*g/|g|) or imbsam (Zhou et al.: only the tail "
                  "classes' loss is perturbed; optim.imbsam_threshold); the meta methods' "
                  "virtual step stays plain SGD", choices=("none", "sam", "imbsam"))
    sam_rho: float = _f(0.05, "SAM/ImbSAM perturbation radius rho", gt=0.0)
    imbsam_threshold: int = _f(100, "ImbSAM: classes with at least this many training images "
                               "are head (their loss is not perturbed)", ge=1)
    max_norm: float = _f(0.0, "MaxNorm (weight balancing): after every step, classifier weight "
                         "rows longer than min + max_norm*(max - min) of their norms at the "
                         "start of training are scaled down to it (0 = off)", ge=0.0, le=1.0)


_OURS = " [our reconstruction, not from the paper]"


@dataclass(frozen=True)
class MfmConfig:
    """Meta Feature Modulator options (method.name=mfm). See docs/METHOD.md."""

    sites: str = _f("penultimate", "where features are modulated: the pooled penultimate feature, "
                    "each stage output, or after every block BatchNorm" + _OURS,
                    choices=("penultimate", "stage", "bn"))
    form: str = _f("scale", "scale: h*gamma, gamma=exp(bound*tanh(u)); scale_shift: "
                   "h*(1+bound*tanh(u)) + bound*tanh(v)" + _OURS, choices=("scale", "scale_shift"))
    modulator: str = _f("network", "source of the modulation: a modulator network (per sample), "
                        "free per-site vectors, or free per-site per-class tables" + _OURS,
                        choices=("network", "free", "free_per_class"))
    inputs: str = _f("loss_freq", "modulator network inputs: (detached loss, log class frequency) "
                     "or the site's detached pooled features" + _OURS,
                     choices=("loss_freq", "features"))
    apply: str = _f("train", "modulate only training forwards, or also meta and evaluation "
                    "forwards (then the modulation is part of the model)" + _OURS,
                    choices=("train", "everywhere"))
    bound: float = _f(1.0, "bound of the modulation (see form)" + _OURS, gt=0.0)
    reg: float = _f(0.0, "L2 penalty on u, v in the meta objective" + _OURS, ge=0.0)
    hidden: int = _f(100, "hidden width of the modulator network's MLPs", ge=1)
    base_loss: str = _f("balanced_softmax", "training loss the modulation acts through "
                        "(default chosen on a validation split, docs/METHOD.md; la: logit "
                        "adjustment with method.la_tau)" + _OURS,
                        choices=("ce", "balanced_softmax", "la"))
    meta_optimizer: str = _f("adam", "optimiser of the modulation parameters",
                             choices=("adam", "sgd"))
    meta_lr: float = _f(1e-3, "meta learning rate", gt=0.0)
    meta_weight_decay: float = _f(0.0, "meta optimiser weight decay", ge=0.0)
    meta_lr_follows_schedule: bool = _f(True, "scale the meta lr with the classifier's lr "
                                        "schedule" + _OURS)
    meta_interval: int = _f(10, "run the virtual step + meta update every N iterations (1 = "
                            "every iteration, the exact online step; 10, the default, was "
                            "chosen on cost — docs/METHOD.md)", ge=1)
    meta_start_epoch: int = _f(0, "first epoch with meta updates", ge=0)
    meta_batch_size: int = _f(0, "meta batch size (0 = train.batch_size, capped at the meta "
                              "set)", ge=0)
    virtual_params: str = _f("fc", "parameters the virtual step updates: the classifier only "
                             "(fc, the default, chosen on cost), the last stage too, or all "
                             "(the exact step)", choices=("all", "last_stage", "fc"))
    virtual_step: str = _f("sgd", "virtual step: plain SGD, or mirror the real optimiser (SGD "
                           "with optim.momentum, optim.nesterov, optim.weight_decay and its "
                           "current momentum buffers)" + _OURS, choices=("sgd", "mirror"))
    virtual_weight_decay: bool = _f(False, "include optim.weight_decay in the virtual step "
                                    "(mfm.virtual_step=sgd; mirror always includes it)")
    reuse_virtual_grads: bool = _f(False, "APPROXIMATION: the real step reuses the virtual "
                                   "step's gradient (phi from before this meta update)")
    modulator_from: str = _f("", "transfer: a run id or modulator.pt path whose trained "
                             "modulator network is loaded (no meta set, no virtual step)")
    freeze_modulator: bool = _f(True, "keep a transferred modulator frozen")
    allow_label_shortcut: bool = _f(False, "EXPERIMENT ONLY: accept label-dependent "
                                    "modulation beyond a penultimate scale, to measure the "
                                    "label shortcut the validation rule guards against")


@dataclass(frozen=True)
class MwnetConfig:
    """Meta-Weight-Net options (method.name=mwnet; Shu et al., NeurIPS 2019). Defaults are
    ours; ``preset=official`` takes the authors' class-imbalance code's values (MWNET_OFFICIAL)
    for every key not set explicitly. See docs/METHOD.md."""

    preset: str = _f("ours", "ours: the defaults below; official: the authors' class-imbalance "
                     "code's values (xjtushujun/Meta-weight-net_class-imbalance) for every "
                     "mwnet key not set explicitly", choices=MWNET_PRESETS)
    hidden: int = _f(100, "hidden width of the 1-hidden-layer weighting MLP", ge=1)
    meta_optimizer: str = _f("adam", "optimiser of the weighting network (official: sgd)",
                             choices=("adam", "sgd"))
    meta_lr: float = _f(1e-3, "lr of the weighting network's optimiser (official: 1e-5)", gt=0.0)
    meta_momentum: float = _f(0.9, "momentum of the weighting network's optimiser (sgd only)",
                              ge=0.0, lt=1.0)
    meta_nesterov: bool = _f(True, "Nesterov momentum for the weighting network (sgd only)")
    meta_weight_decay: float = _f(1e-4, "weight decay of the weighting network's optimiser "
                                  "(official: 5e-4)", ge=0.0)
    meta_lr_follows_schedule: bool = _f(False, "scale the meta lr with the classifier's schedule")
    meta_interval: int = _f(1, "run the virtual step + meta update every N iterations", ge=1)
    meta_start_epoch: int = _f(0, "first epoch with meta updates", ge=0)
    meta_batch_size: int = _f(0, "meta batch size (0 = train.batch_size, capped at the meta "
                              "set)", ge=0)
    virtual_params: str = _f("all", "parameters the virtual step updates",
                             choices=("all", "last_stage", "fc"))
    virtual_weight_decay: bool = _f(False, "include optim.weight_decay in the virtual step")
    virtual_weighting: str = _f("mean", "virtual-step loss: mean (mean_i V(l_i) l_i) or "
                                "normalized (sum_i V(l_i) l_i / sum_j V(l_j), as the real step; "
                                "official)", choices=("mean", "normalized"))
    detach_virtual_loss: bool = _f(True, "the weighting network sees the detached loss in the "
                                   "virtual step (false, official: the gradient of the virtual "
                                   "step also flows through V(l(w)))")
    lr_lead_epochs: int = _f(0, "the real step uses the lr schedule this many epochs ahead of "
                             "the virtual step (official: 1)", ge=0)


# What mwnet.preset=official fills in for every mwnet key not set explicitly: the choices of
# the authors' class-imbalance code (xjtushujun/Meta-weight-net_class-imbalance).
MWNET_OFFICIAL: dict[str, Any] = {
    "meta_optimizer": "sgd", "meta_lr": 1e-5, "meta_momentum": 0.9, "meta_nesterov": True,
    "meta_weight_decay": 5e-4, "virtual_weighting": "normalized", "detach_virtual_loss": False,
    "lr_lead_epochs": 1,
}

# -- the identity of a run ------------------------------------------------------------------------
# A sweep reuses a finished run whose config hash (mfm.store.hashing.config_hash) equals its
# cell's; the hash is taken over identity_dict(resolved config), the one home of this rule:
#  * EXECUTION_KEYS say HOW a run executes, not WHAT it trains: two runs that differ only there
#    trained the same thing (up to float summation order), so they are never part of it;
#  * LATE_KEYS were added after runs were recorded: at their default they are left out, so
#    every run recorded before them keeps its hash; set to anything else they count.
EXECUTION_KEYS = ("train.threads", "train.channels_last", "train.compile")
LATE_KEYS: dict[str, Any] = {
    "train.amp": "off",
    # the long-tail toolbox (2026-12-08): at these values a run trains as before them
    "data.sampler": "instance", "data.test_max_per_class": 0, "method.reweight": "none",
    "optim.schedule": "step", "optim.sam": "none", "optim.max_norm": 0.0, "train.init_from": "",
    "train.trainable": "all", "train.reset_classifier": False,
}


def identity_dict(config: typing.Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config (nested dict) that says what a run trains: without the
    EXECUTION_KEYS, and without the LATE_KEYS at their defaults."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()}
    drops = [*EXECUTION_KEYS, *(k for k, d in LATE_KEYS.items() if _lookup(config, k) == d)]
    for key in drops:
        sec, _, name = key.rpartition(".")
        holder = out.get(sec) if sec else out
        if isinstance(holder, dict):
            holder.pop(name, None)
            if sec and holder == {}:
                out.pop(sec)
    return out


def _lookup(config: typing.Mapping[str, Any], key: str) -> Any:
    obj: Any = config
    for part in key.split("."):
        if not isinstance(obj, typing.Mapping) or part not in obj:
            return None
        obj = obj[part]
    return obj


# Sections that only mean something for one method.
SECTION_METHODS = {"mfm": ("mfm",), "mwnet": ("mwnet",)}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    mfm: MfmConfig = field(default_factory=MfmConfig)
    mwnet: MwnetConfig = field(default_factory=MwnetConfig)
    seed: int = _f(0, "seed for python, numpy and torch (training order, init, augmentation)",
                   ge=0, le=SEED_MAX)
    device: str = _f("auto", "auto | cpu | cuda | cuda:N")


@dataclass(frozen=True)
class FieldInfo:
    """One configurable key, for help screens and generated forms."""

    key: str
    type: str
    default: Any
    help: str
    choices: tuple[str, ...] | None
    ge: float | None
    gt: float | None
    le: float | None
    lt: float | None
    methods: tuple[str, ...] | None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a config class (computed once per class: a sweep builds
    thousands of configs)."""
    return typing.get_type_hints(cls)


def _leaf_fields() -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Every dotted key -> (field, type)."""
    out: dict[str, tuple[dataclasses.Field[Any], Any]] = {}
    top_hints = _hints(Config)
    for f in dataclasses.fields(Config):
        t = top_hints[f.name]
        if isinstance(t, type) and dataclasses.is_dataclass(t):
            hints = _hints(t)
            for sub in dataclasses.fields(t):
                out[f"{f.name}.{sub.name}"] = (sub, hints[sub.name])
        else:
            out[f.name] = (f, t)
    return out


_FIELDS = _leaf_fields()
_SECTIONS = {key.partition(".")[0] for key in _FIELDS if "." in key}


def _type_name(t: Any) -> str:
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "float"
    if t is str:
        return "str"
    if typing.get_origin(t) is tuple:
        return "list[float]"
    if _is_word_int(t):
        return "auto | int"
    return str(t)


def _words(key: str) -> tuple[str, ...]:
    return tuple(_FIELDS[key][0].metadata.get("words") or ())


def _is_word_int(t: Any) -> bool:
    """A number-or-word field: ``int | str`` (the words are in the field's metadata)."""
    return set(typing.get_args(t)) == {int, str}


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{f.name} has no default")  # every field is made by _f, which sets one


def describe() -> list[FieldInfo]:
    """The schema: every key with its type, default, help and allowed range."""
    out = []
    for key, (f, t) in _FIELDS.items():
        m = f.metadata
        out.append(FieldInfo(key, _type_name(t), _default(f), m.get("help", ""), m.get("choices"),
                             m.get("ge"), m.get("gt"), m.get("le"), m.get("lt"), m.get("methods")))
    return out


def _unknown(key: str) -> ConfigError:
    import difflib

    close = difflib.get_close_matches(key, list(_FIELDS), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    section = key.partition(".")[0]
    same = [k for k in _FIELDS if "." in k and k.partition(".")[0] == section]
    if same:  # a typo inside a known section: that section's keys are the useful list
        return ConfigError(key, f"unknown key; {hint}valid keys in [{section}]: " + ", ".join(same))
    return ConfigError(key, f"unknown key; {hint}valid keys: " + ", ".join(_FIELDS))


def _coerce(key: str, value: Any, t: Any) -> Any:
    """Type-check a value from TOML/JSON (already typed) against the field type."""
    name = _type_name(t)
    if t is bool:
        if isinstance(value, bool):
            return value
    elif t is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif t is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, f"must be a finite number (got {_show(value)})")
            return float(value)
    elif t is str:
        if isinstance(value, str):
            return value
    elif _is_word_int(t):
        if (isinstance(value, int) and not isinstance(value, bool)) or value in _words(key):
            return value
    elif typing.get_origin(t) is tuple:
        if isinstance(value, (list, tuple)) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            if not all(math.isfinite(v) for v in value):
                raise ConfigError(key, f"must be finite numbers (got {_show(list(value))})")
            return tuple(float(v) for v in value)
    raise ConfigError(key, f"expected {name}, got {_show(value)}")


def _parse_text(key: str, text: str, t: Any) -> Any:
    """Parse the text of a ``--set key=value`` override into the field's type."""
    name = _type_name(t)
    s = text.strip()
    try:
        if t is bool:
            low = s.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if t is int:
            return int(s)
        if t is float:
            v = float(s)
            if not math.isfinite(v):
                raise ConfigError(key, f"must be a finite number (got {_show(text)})")
            return v
        if t is str:
            return s
        if _is_word_int(t):
            return s if s in _words(key) else int(s)
        if typing.get_origin(t) is tuple:
            s = s.strip("[]()")
            vals = tuple(float(p) for p in s.split(",") if p.strip())
            if not all(math.isfinite(v) for v in vals):
                raise ConfigError(key, f"must be finite numbers (got {_show(text)})")
            return vals
    except ConfigError:
        raise
    except ValueError:
        pass
    raise ConfigError(key, f"expected {name}, got {_show(text)}")


def parse_override(item: str) -> tuple[str, Any]:
    """``"optim.lr=0.05"`` -> ``("optim.lr", 0.05)``, type-checked."""
    if "=" not in item:
        raise ConfigError(item, "override must look like key=value (e.g. optim.lr=0.05)")
    key, _, text = item.partition("=")
    key = key.strip()
    if key not in _FIELDS:
        raise _unknown(key)
    return key, _parse_text(key, text, _FIELDS[key][1])


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if key not in _SECTIONS:
                raise _unknown(key)
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def _range_text(m: typing.Mapping[str, Any]) -> str:
    parts = [f"{op} {_num(m[k])}" for k, op in (("ge", ">="), ("gt", ">"), ("le", "<="),
                                                   ("lt", "<")) if m.get(k) is not None]
    return " and ".join(parts)


def _check_field(key: str, value: Any, m: typing.Mapping[str, Any]) -> None:
    choices = m.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(key, f"must be one of {' | '.join(choices)} (got {_show(value)})")
    vals = value if isinstance(value, tuple) else (value,)
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if isinstance(v, float) and not math.isfinite(v):
            # NaN compares false with every bound: without this it would pass them all
            raise ConfigError(key, f"must be a finite number (got {_show(value)})")
        if isinstance(v, int) and m.get("le") is None and v > INT_MAX:
            raise ConfigError(key, f"must be <= {INT_MAX} (got {_show(value)})")
        bad = ((m.get("ge") is not None and v < m["ge"])
               or (m.get("gt") is not None and v <= m["gt"])
               or (m.get("le") is not None and v > m["le"])
               or (m.get("lt") is not None and v >= m["lt"]))
        if bad:
            raise ConfigError(key, f"must be {_range_text(m)} (got {_show(value)})")


def _validate(cfg: Config, explicit: set[str]) -> None:
    flat = _flatten_config(cfg)
    for key, value in flat.items():
        _check_field(key, value, _FIELDS[key][0].metadata)
    for key in sorted(explicit):
        methods = applies_to(key)
        if methods and cfg.method.name not in methods:
            raise ConfigError(key, f"applies only to method.name in {' | '.join(methods)} "
                                   f"(method.name is {cfg.method.name!r})")
    if not _DEVICE_RE.match(cfg.device):
        raise ConfigError("device", f"must be auto | cpu | cuda | cuda:N (got {_show(cfg.device)})")
    ms = cfg.optim.milestones
    if any(not (0.0 < m < 1.0) for m in ms) or any(a >= b for a, b in zip(ms, ms[1:])):
        raise ConfigError("optim.milestones", "must be strictly increasing fractions in (0, 1) "
                          f"(got {_show(list(ms))})")
    if cfg.optim.warmup_epochs >= cfg.train.epochs and cfg.optim.warmup_epochs > 0:
        raise ConfigError("optim.warmup_epochs",
                          f"must be < train.epochs = {cfg.train.epochs} "
                          f"(got {cfg.optim.warmup_epochs})")
    if cfg.train.few_threshold > cfg.train.many_threshold:
        raise ConfigError("train.few_threshold",
                          f"must be <= train.many_threshold = {cfg.train.many_threshold} "
                          f"(got {cfg.train.few_threshold})")
    for key, (applies, why) in _CONDITIONAL.items():
        if key in explicit and not applies(cfg):
            raise ConfigError(key, f"applies only to {why}")
    _validate_meta(cfg, explicit)
    _validate_toolbox(cfg)
    _validate_execution(cfg)
    if cfg.data.name == "imagefolder" and not cfg.data.root:
        raise ConfigError("data.root", "imagefolder needs data.root: a folder with train/ and "
                                       "test/, one sub-folder per class")


def _validate_execution(cfg: Config) -> None:
    """Rules of the keys that say how the training step executes."""
    t = cfg.train
    if t.compile != "off" and cfg.method.name in META_METHODS:
        raise ConfigError("train.compile", f"{t.compile} cannot compile method.name="
                          f"{cfg.method.name}: its bilevel step needs double backward, which "
                          "torch.compile's aot_autograd refuses (pytorch #92348, #183603); "
                          "use train.compile=off")
    if t.amp == "fp16" and cfg.device == "cpu":
        raise ConfigError("train.amp", "fp16 autocast runs on CUDA only: use train.amp=bf16 on "
                          "the CPU (or off)")


SHORTCUT_HELP = (
    "label-dependent modulation (free_per_class, or network with inputs=loss_freq) on "
    "training forwards only hands the network its label: it learns to read the class from the "
    "modulation and fails at test (a reference implementation measured 10 % accuracy on "
    "Fashion-MNIST-LT; docs/METHOD.md has our own measurement). Only a scale "
    "of the penultimate feature is safe, since it changes the logits' confidence, not which "
    "class wins. Use mfm.sites=penultimate with mfm.form=scale, or a label-free source "
    "(mfm.modulator=free, or network with mfm.inputs=features); mfm.allow_label_shortcut=true "
    "only to measure the effect")


def _validate_meta(cfg: Config, explicit: set[str]) -> None:
    """Rules of the meta methods (METHOD.md): meta set, label shortcut, transfer."""
    name = cfg.method.name
    m = cfg.mfm
    transfer = name == "mfm" and bool(m.modulator_from)
    if name in META_METHODS and cfg.data.meta_per_class == 0 and not transfer:
        raise ConfigError("data.meta_per_class", f"must be >= 1 for method.name={name}: the "
                          "meta update needs a balanced meta set (got 0)")
    w = cfg.mwnet
    if name == "mwnet" and w.meta_optimizer == "sgd" and w.meta_nesterov and w.meta_momentum == 0:
        raise ConfigError("mwnet.meta_nesterov", "Nesterov momentum needs mwnet.meta_momentum > 0 "
                          "(set mwnet.meta_nesterov=false for plain SGD)")
    if name != "mfm":
        return
    label_dependent = m.modulator == "free_per_class" or (
        m.modulator == "network" and m.inputs == "loss_freq")
    if label_dependent and m.apply == "everywhere":
        raise ConfigError("mfm.apply", "everywhere needs a modulation that does not depend on the "
                          "label (evaluation has none): use mfm.modulator=free, or network with "
                          "mfm.inputs=features")
    if m.modulator == "network" and m.inputs == "loss_freq" and m.sites != "penultimate" \
            and m.allow_label_shortcut:
        raise ConfigError("mfm.sites", "a loss_freq modulator reads each sample's loss, which "
                          "exists only at the penultimate feature: use mfm.sites=penultimate "
                          f"(got {m.sites!r})")
    if label_dependent and not (m.sites == "penultimate" and m.form == "scale") \
            and not m.allow_label_shortcut:
        raise ConfigError("mfm.sites" if m.sites != "penultimate" else "mfm.form", SHORTCUT_HELP)
    if m.reuse_virtual_grads and m.virtual_params != "all":
        raise ConfigError("mfm.reuse_virtual_grads", "needs mfm.virtual_params=all (the real step "
                          f"needs every parameter's gradient; got {m.virtual_params!r})")
    if m.modulator_from and m.modulator != "network":
        raise ConfigError("mfm.modulator_from", "only a modulator network can be transferred: "
                          f"set mfm.modulator=network (got {m.modulator!r})")


def _validate_toolbox(cfg: Config) -> None:
    """Rules of the long-tail toolbox's keys (docs/METHOD.md, "The long-tail toolbox")."""
    name, t, o = cfg.method.name, cfg.train, cfg.optim
    if t.init_from and not _INIT_RE.match(t.init_from):
        raise ConfigError("train.init_from", "must be a run id (digits), arm:NAME in a sweep "
                          f"file, or '' (got {_show(t.init_from)})")
    if name == "tau_norm" and not t.init_from:
        raise ConfigError("train.init_from", "tau_norm is a stage-2 run that trains nothing: "
                          "set train.init_from to the run whose classifier it normalises")
    if t.trainable == "classifier" and not t.init_from:
        raise ConfigError("train.trainable", "classifier trains only the classifier of another "
                          "run's network: set train.init_from (or use train.trainable=all)")
    if t.trainable == "classifier" and name in META_METHODS:
        raise ConfigError("train.trainable", f"classifier is not available for method.name="
                          f"{name} (its virtual step would move frozen features); use all")
    posthoc = name == "tau_norm" or (name == "la" and cfg.method.la_mode == "posthoc")
    if posthoc and cfg.method.tau_select == "val" and cfg.data.val_per_class == 0:
        raise ConfigError("method.tau_select", "val chooses tau on the validation split: set "
                          "data.val_per_class >= 1 (or method.tau_select=fixed)")
    if not cfg.method.tau_grid and cfg.method.tau_select == "val":
        raise ConfigError("method.tau_grid", "must hold at least one tau")
    if o.sam != "none" and name == "mfm" and cfg.mfm.reuse_virtual_grads:
        raise ConfigError("optim.sam", f"{o.sam} needs the real step's own gradient: it cannot "
                          "reuse the virtual step's (set mfm.reuse_virtual_grads=false)")
    from mfm.lineage import classifier_kind

    rescales = name == "tau_norm" or o.max_norm > 0
    if rescales and classifier_kind(name, cfg.model.classifier) != "linear":
        key = "optim.max_norm" if o.max_norm > 0 else "model.classifier"
        raise ConfigError(key, "rescales the rows of a linear classifier; a cosine classifier "
                          "(ldam_drw's, or model.classifier=cosine) normalises them already: "
                          "set model.classifier=linear")
    if name == "tau_norm" and t.epochs != 1:
        raise ConfigError("train.epochs", f"tau_norm trains nothing: use train.epochs=1 (got "
                          f"{t.epochs})")
    if o.sam != "none" and t.compile != "off":
        raise ConfigError("optim.sam", f"{o.sam} steps twice per batch; use train.compile=off "
                          "with it")


_INIT_RE = re.compile(r"^([0-9]{1,18}|arm:.{1,200})$", re.DOTALL)


def _posthoc(c: Config) -> bool:
    return c.method.name == "tau_norm" or (c.method.name == "la" and c.method.la_mode == "posthoc")


# Keys that mean something only under another key's value. They are rejected when set
# explicitly without it, and left out of the resolved config.
_CONDITIONAL: dict[str, tuple[typing.Callable[[Config], bool], str]] = {
    "mfm.inputs": (lambda c: c.mfm.modulator == "network", "mfm.modulator=network"),
    "mfm.hidden": (lambda c: c.mfm.modulator == "network", "mfm.modulator=network"),
    # mirror takes the real optimiser's weight decay, as the real step does
    "mfm.virtual_weight_decay": (lambda c: c.mfm.virtual_step == "sgd", "mfm.virtual_step=sgd"),
    "method.cb_beta": (lambda c: c.method.name in ("cb", "ldam_drw")
                       or c.method.reweight != "none",
                       "method.name in cb | ldam_drw, or method.reweight=cb | drw"),
    "method.drw_start": (lambda c: c.method.name == "ldam_drw" or c.method.reweight == "drw",
                         "method.name=ldam_drw, or method.reweight=drw"),
    "method.la_tau": (lambda c: c.method.name == "la"
                      or (c.method.name == "mfm" and c.mfm.base_loss == "la"),
                      "method.name=la, or mfm with mfm.base_loss=la"),
    "method.tau_select": (_posthoc, "method.name=tau_norm, or la with method.la_mode=posthoc"),
    "method.tau_grid": (lambda c: _posthoc(c) and c.method.tau_select == "val",
                        "method.tau_select=val"),
    "optim.sam_rho": (lambda c: c.optim.sam != "none", "optim.sam=sam | imbsam"),
    "optim.imbsam_threshold": (lambda c: c.optim.sam == "imbsam", "optim.sam=imbsam"),
    "optim.milestones": (lambda c: c.optim.schedule == "step", "optim.schedule=step"),
    "optim.lr_decay": (lambda c: c.optim.schedule == "step", "optim.schedule=step"),
    "train.init_checkpoint": (lambda c: bool(c.train.init_from), "a train.init_from run"),
    "train.reset_classifier": (lambda c: bool(c.train.init_from), "a train.init_from run"),
}


def applies_to(key: str) -> tuple[str, ...] | None:
    """The methods a key means something for (None: every method). The one home of this rule:
    the TUI's forms and the sweeps ask here."""
    section = key.partition(".")[0] if "." in key else ""
    return SECTION_METHODS.get(section) or _FIELDS[key][0].metadata.get("methods")


def key_applies(key: str, values: typing.Mapping[str, Any]) -> bool:
    """Whether ``key`` means something beside these values (flat ``section.key`` -> value; a
    key not in them counts at its default): its method (:func:`applies_to`) and, for the keys
    that mean something only under another key's value (``method.cb_beta`` needs a
    re-weighting, ``optim.sam_rho`` a SAM step...), that value. The TUI's forms ask here, so
    they show what the config would keep."""
    flat = {k: _default(f) for k, (f, _) in _FIELDS.items()}
    flat.update({k: v for k, v in values.items() if k in flat})
    methods = applies_to(key)
    if methods and flat["method.name"] not in methods:
        return False
    conditional = _CONDITIONAL.get(key)
    if conditional is None:
        return True
    tree: dict[str, Any] = {}
    for k, v in flat.items():
        sec, _, name = k.rpartition(".")
        if sec:
            tree.setdefault(sec, {})[name] = v
    view = types.SimpleNamespace(**{sec: types.SimpleNamespace(**d) for sec, d in tree.items()})
    try:
        return bool(conditional[0](typing.cast(Config, view)))
    except (TypeError, ValueError, AttributeError):  # a half-typed value: show the key
        return True


def _flatten_config(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _FIELDS:
        obj: Any = cfg
        for part in key.split("."):
            obj = getattr(obj, part)
        out[key] = obj
    return out


def _build(values: dict[str, Any], explicit: set[str]) -> Config:
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in values.items():
        if "." in key:
            sec, _, name = key.partition(".")
            sections.setdefault(sec, {})[name] = value
        else:
            top[key] = value
    hints = _hints(Config)
    kwargs = {sec: hints[sec](**vals) for sec, vals in sections.items()}
    cfg = Config(**kwargs, **top)
    _validate(cfg, explicit)
    return cfg


def config_from_dict(d: dict[str, Any], overrides: typing.Iterable[str] = ()) -> Config:
    """Build and validate a Config from a nested (TOML/JSON-shaped) dict plus overrides."""
    values: dict[str, Any] = {}
    for key, value in _flatten(d).items():
        if key not in _FIELDS:
            raise _unknown(key)
        values[key] = _coerce(key, value, _FIELDS[key][1])
    for item in overrides:
        key, value = parse_override(item)
        values[key] = value
    return _build(_apply_presets(values), set(values))


def preset_values(values: dict[str, Any]) -> dict[str, Any]:
    """What the presets in ``values`` (flat ``section.key`` -> value) fill in for the keys not
    set: ``mwnet.preset=official`` gives the official value of each official mwnet key."""
    if values.get("mwnet.preset") != "official":
        return {}
    return {f"mwnet.{k}": v for k, v in MWNET_OFFICIAL.items()}


def _apply_presets(values: dict[str, Any]) -> dict[str, Any]:
    """The presets' values for every key not in ``values`` (the explicit ones win). Done here,
    once, so the resolved config holds the values it trains with; resolving it again changes
    nothing (every filled key is then explicit)."""
    return {**preset_values(values), **values}


def _plain(value: Any) -> Any:
    """A config as JSON would give it back: dataclasses as dicts, tuples as lists (what
    ``json.loads(json.dumps(dataclasses.asdict(cfg)))`` gives, without copying twice)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """The resolved config as a nested JSON-ready dict (tuples become lists), holding only
    the keys that apply to its method (no mfm.* section for a ce run)."""
    d = _plain(cfg)
    for key in _FIELDS:
        methods = applies_to(key)
        conditional = _CONDITIONAL.get(key)
        if (methods and cfg.method.name not in methods) or (
                conditional is not None and not conditional[0](cfg)):
            sec, _, name = key.partition(".")
            d[sec].pop(name, None)
    return {k: v for k, v in d.items() if v != {}}


def read_toml(path: str | Path) -> dict[str, Any]:
    """A settings file as a nested dict; ConfigError('--config', ...) if unreadable or not TOML."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("--config", f"cannot read {str(p)!r}: "
                          f"{getattr(e, 'strerror', None) or e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("--config", f"{str(p)!r} is not valid TOML: {e}") from None


def load_config(path: str | Path | None = None, overrides: typing.Iterable[str] = ()) -> Config:
    """Defaults, then the TOML file at ``path`` (if any), then ``key=value`` overrides."""
    return config_from_dict(read_toml(path) if path is not None else {}, overrides)
