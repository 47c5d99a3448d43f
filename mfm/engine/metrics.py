"""Evaluation metrics from a confusion matrix: overall, per-class and many/medium/few-shot."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy", "shot_groups", "group_accuracy",
           "seconds_to_fraction"]


def confusion_matrix(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts[i, j] = how many samples of true class i were predicted as j (int64)."""
    idx = targets.long() * num_classes + preds.long()
    counts = torch.bincount(idx, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def accuracy(confusion: torch.Tensor) -> float:
    """Overall accuracy (trace / total); 0.0 for an empty matrix."""
    return float(confusion.diagonal().sum()) / max(int(confusion.sum()), 1)


def per_class_accuracy(confusion: torch.Tensor) -> list[float]:
    """Recall of each class (diagonal / row sum); 0.0 for a class with no test samples."""
    conf = confusion.double()
    totals = conf.sum(dim=1)
    acc = torch.where(totals > 0, conf.diagonal() / totals.clamp(min=1), torch.zeros_like(totals))
    return [float(a) for a in acc]


def shot_groups(train_counts: Sequence[int], many_threshold: int,
                few_threshold: int) -> dict[str, list[int]]:
    """Classes with > many_threshold training images are many-shot, < few_threshold few-shot,
    the rest medium-shot (Liu et al. 2019's split, thresholds 100 and 20 by default)."""
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, n in enumerate(train_counts):
        if n > many_threshold:
            groups["many"].append(c)
        elif n < few_threshold:
            groups["few"].append(c)
        else:
            groups["medium"].append(c)
    return groups


def group_accuracy(class_acc: Sequence[float], groups: dict[str, list[int]]) -> dict[str, float]:
    """Mean per-class accuracy inside each non-empty group (empty groups are left out)."""
    return {name: sum(class_acc[c] for c in members) / len(members)
            for name, members in groups.items() if members}


def seconds_to_fraction(accuracies: Sequence[float], seconds: Sequence[float],
                        fraction: float = 0.95) -> float | None:
    """Time to accuracy: the training seconds (summed over epochs, evaluation excluded) until
    the first epoch whose accuracy reaches ``fraction`` of the last epoch's. None without a
    complete history (a run resumed from a checkpoint that predates it)."""
    if not accuracies or len(accuracies) != len(seconds):
        return None
    target = fraction * accuracies[-1]
    total = 0.0
    for acc, sec in zip(accuracies, seconds):
        total += sec
        if acc >= target:
            return total
    return total
