"""Which run a stage-2 run may start from (``train.init_from``): the rules that need no
records and no torch, shared by the queue-time and run-time checks
(:mod:`mfm.runner.preflight`, :mod:`mfm.runner.run_options`) and by sweeps, whose parent arms
are checked cell against cell before anything is queued.

A child loads its parent's model weights (its ``last.pt`` or ``best.pt``), so both must build
the same network: the same ``model.name``, the same kind of classifier (:func:`classifier_kind`)
and the same number of classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # light to import: the records' module reads parent_id from here
    from mfm.config import Config

__all__ = ["ARM_PREFIX", "COSINE_METHODS", "classifier_kind", "arm_name", "parent_id",
           "fit_problem", "classes_problem", "with_parent"]

#: ``train.init_from = "arm:NAME"``: in a sweep file, the cell of arm NAME at the same place
#: (mfm.sweeps.lineage says which); anywhere else it is refused
ARM_PREFIX = "arm:"

#: the methods whose own classifier (``model.classifier = auto``) is cosine: LDAM's margins
#: act on normed logits (Cao et al.); every other method's is linear. Kept in step with the
#: methods' ``classifier`` attribute (mfm.methods, which loads torch) by a test.
COSINE_METHODS = ("ldam_drw",)


def classifier_kind(method: str, classifier: str = "auto") -> str:
    """The last layer a run builds: ``model.classifier`` (linear | cosine), or for ``auto``
    its method's own (cosine for COSINE_METHODS, else linear)."""
    if classifier != "auto":
        return classifier
    return "cosine" if method in COSINE_METHODS else "linear"


def arm_name(init_from: str) -> str | None:
    """NAME of ``arm:NAME``, or None for a run id or ''."""
    return init_from[len(ARM_PREFIX):] if init_from.startswith(ARM_PREFIX) else None


def parent_id(init_from: str) -> int | None:
    """The run id ``train.init_from`` names, or None ('' or ``arm:NAME``)."""
    return int(init_from) if init_from.isascii() and init_from.isdigit() else None


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = config.get(name)
    return value if isinstance(value, Mapping) else {}


def fit_problem(parent: Mapping[str, Any], child: Config) -> str | None:
    """Why the weights of a run trained with the resolved config ``parent`` cannot start
    ``child``, in words that follow the parent's name ("is a resnet32, ..."), or None. The
    network only: the class count needs the data (:func:`classes_problem`)."""
    model = _section(parent, "model")
    method = str(_section(parent, "method").get("name", "?"))
    name = str(model.get("name", "?"))
    if name != child.model.name:
        return (f"is a {name}, this run builds a {child.model.name} (model.name): its weights "
                "do not fit")
    theirs = classifier_kind(method, str(model.get("classifier", "auto")))
    ours = classifier_kind(child.method.name, child.model.classifier)
    if theirs != ours:
        return (f"has a {theirs} classifier ({method}), this run builds a {ours} one "
                f"(model.classifier={child.model.classifier} with method.name="
                f"{child.method.name}): set model.classifier={theirs}")
    return None


def classes_problem(parent_classes: int, child_classes: int) -> str | None:
    """Why a parent trained on ``parent_classes`` classes cannot start a run of
    ``child_classes``, in words that follow the parent's name, or None."""
    if parent_classes == child_classes:
        return None
    return (f"was trained on {parent_classes} classes, this run's data has {child_classes}: "
            "its classifier does not fit")


def with_parent(cfg: Config, run_id: int) -> Config:
    """``cfg`` starting from run ``run_id`` (``train.init_from`` set to its id)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=str(run_id)))
