"""Two-stage training: a run that starts from its parent's network (``train.init_from``) and
may train only the classifier (``train.trainable=classifier``: cRT, weight balancing's stage 2).

With ``classifier`` every parameter outside the model's declared classifier is frozen
(``requires_grad`` off, left out of the optimiser) and every module outside it stays in eval
mode while training, so the frozen network's BatchNorm running statistics do not move either:
the stage-2 network differs from its parent only in its classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mfm.engine.checkpoint import load_checkpoint
from mfm.models.registry import classifier_module, declared_params

__all__ = ["ParentMismatch", "apply_train_mode", "freeze_for", "load_parent",
           "reset_classifier", "trainable_params"]


class ParentMismatch(ValueError):
    """The parent's weights do not fit this run's model. One line naming train.init_from."""


def load_parent(model: nn.Module, path: Path, *, device: torch.device) -> None:
    """Load the parent's model weights (``path``: its last.pt or best.pt) into ``model``,
    exactly: every parameter and buffer, nothing missing, nothing extra."""
    state = load_checkpoint(path, map_location=device)
    weights = state.get("model")
    if not isinstance(weights, dict):
        raise ParentMismatch(f"train.init_from: {path} holds no model weights")
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    if missing or extra:
        raise ParentMismatch(f"train.init_from: the parent's network is another model "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})")
    head = set(declared_params(model, "classifier"))
    wrong = [n for n, v in weights.items() if tuple(v.shape) != tuple(own[n].shape)]
    for name in wrong:
        if name not in head:
            raise ParentMismatch(f"train.init_from: the parent's network is another model "
                                 f"({name} has shape {tuple(weights[name].shape)} there, "
                                 f"{tuple(own[name].shape)} here)")
    if wrong:
        name = wrong[0]
        raise ParentMismatch(f"train.init_from: the parent has another class count "
                             f"({name} has shape {tuple(weights[name].shape)} there, "
                             f"{tuple(own[name].shape)} here)")
    model.load_state_dict(weights)


def reset_classifier(model: nn.Module) -> None:
    """A fresh initialisation of the declared classifier (train.reset_classifier: cRT), drawn
    from torch's seeded generator as the model's own initialisation is."""
    head = classifier_module(model)
    reset = getattr(head, "reset_parameters", None)
    if not callable(reset):
        raise ValueError(f"train.reset_classifier: {type(head).__name__} cannot be "
                         f"re-initialised (no reset_parameters)")
    reset()


def freeze_for(model: nn.Module, trainable: str) -> None:
    """Freeze everything but the declared classifier (``classifier``); ``all``: nothing."""
    if trainable == "all":
        return
    if trainable != "classifier":
        raise ValueError(f"train.trainable must be all | classifier (got {trainable!r})")
    keep = set(declared_params(model, "classifier"))
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimiser updates (those that require a gradient)."""
    return [p for p in model.parameters() if p.requires_grad]


def apply_train_mode(model: nn.Module, trainable: str) -> None:
    """Training mode for a training pass: the whole model, or with ``classifier`` only the
    classifier (the frozen rest in eval mode)."""
    if trainable == "classifier":
        model.eval()
        classifier_module(model).train()
    else:
        model.train()
