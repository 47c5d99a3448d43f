"""Checks made before a run is recorded (or, for a queued run, before it starts): the data
is there and splittable, a transferred modulator exists and fits, and the parent run a
stage-2 run starts from (``train.init_from``) is there and fits. Errors are one line.

Queueing (:func:`check_data`, :func:`check_modulator`, :func:`check_parent`) loads no torch:
it reads labels, the modulator's ``modulator.json`` and the parent's record and checkpoint
file (its zip structure, :func:`mfm.runfiles.checkpoint_problem`). The run process (and a
foreground run) makes the full checks, ``mfm.runner.run_options``, which loads the modulator
and builds the model, and requires the parent to be completed (a module of its own, so that
nothing queueing runs even refers to torch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mfm import runfiles
from mfm.config import Config, ConfigError
from mfm.crashlog import describe_os_error
from mfm.lineage import arm_name, classes_problem, fit_problem
from mfm.methods.transfer import (
    DESCRIPTION_FILE,
    MODULATOR_FILE,
    ModulatorFileError,
    check_description,
    description_path,
    read_description,
)
from mfm.store import Database, RunRecord, repo
from mfm.store.records import LIVE
from mfm.text import one_line, visible

__all__ = ["PreflightError", "check_data", "check_modulator", "check_parent",
           "parent_checkpoint"]


# Data errors say what was looked for where and how to get it: longer than most one-liners.
DATA_MESSAGE_MAX = 1000


class PreflightError(ValueError):
    """One line, naming the key."""


def check_data(cfg: Config) -> dict[str, Any]:
    """The data root holds the data and the split is possible (labels only, no torch).
    Returns the split's per-class counts (``mfm.data.sources.preview_counts``), for the checks
    that need them (:func:`check_parent`'s class count).

    Every file the run will load is opened and checked (IDX headers and lengths, CIFAR
    pickles through the restricted unpickler, the imagefolder layout), so a bad data root
    is one line here and nothing is recorded. Image contents (imagefolder decoding) are
    checked only when the run loads them."""
    from mfm.data.sources import preview_counts

    try:
        return preview_counts(cfg.data)
    except ConfigError as e:
        raise PreflightError(one_line(e, limit=DATA_MESSAGE_MAX)) from None
    except OSError as e:  # what the sources did not name themselves (a vanished mount)
        raise PreflightError(one_line(f"data.root: {cfg.data.root or '(default)'}: "
                                      f"{describe_os_error(e)}",
                                      limit=DATA_MESSAGE_MAX)) from None


def _modulator_path(db: Database, ref: str) -> str:
    """``mfm.modulator_from`` (a run id or a file) -> the modulator file's path; a run id must
    name a finished MFM run with a modulator network."""
    if not ref.isdigit():
        return ref
    src = repo.get_run(db, int(ref))
    if src is None:
        raise PreflightError(f"mfm.modulator_from: no run {ref} in the records (see mfm runs)")
    if src.method != "mfm" or src.config.get("mfm", {}).get("modulator") != "network":
        raise PreflightError(f"mfm.modulator_from: run {ref} is not an MFM run with "
                             f"mfm.modulator=network (it is {src.method})")
    path = os.path.join(src.checkpoint_dir or "", MODULATOR_FILE)
    if not src.checkpoint_dir or not os.path.exists(path):
        raise PreflightError(f"mfm.modulator_from: run {ref} has no saved modulator "
                             f"(status {src.status}; it is written when the run finishes)")
    return path


def _transfers(cfg: Config) -> bool:
    return cfg.method.name == "mfm" and bool(cfg.mfm.modulator_from)


def check_modulator(db: Database, cfg: Config) -> None:
    """Queue-time check of ``mfm.modulator_from``, torch-free: the source resolves, its
    modulator file exists and the ``modulator.json`` beside it fits this run's options
    (``check_description``). What needs the built model is checked when the run starts.

    A modulator saved before descriptions were written (no ``modulator.json``) is refused
    with one line saying how to get one; ``mfm run --headless`` still takes it (the full check
    runs in that process)."""
    if not _transfers(cfg):
        return
    ref = cfg.mfm.modulator_from
    path = _modulator_path(db, ref)
    if not os.path.exists(path):
        raise PreflightError(f"mfm.modulator_from: {path!r} does not exist")
    desc = description_path(path)
    if not desc.exists():
        source = f"run {ref}" if ref.isdigit() else "the run that wrote it"
        raise PreflightError(f"mfm.modulator_from: {path!r} has no {DESCRIPTION_FILE} beside it "
                             f"(saved by an older version); re-run {source} to queue this "
                             f"transfer, or train it now with mfm run --headless")
    try:
        check_description(read_description(desc), cfg.mfm)
    except ModulatorFileError as e:
        raise PreflightError(str(e)) from None


def parent_checkpoint(rec: RunRecord, which: str) -> Path | None:
    """The parent's checkpoint file a child loads: ``last.pt`` or ``best.pt``
    (``train.init_checkpoint``) in its folder; None when the run has no folder recorded."""
    if not rec.checkpoint_dir:
        return None
    return Path(rec.checkpoint_dir) / (runfiles.BEST if which == "best" else runfiles.LAST)


def _checkpoint_problem(rec: RunRecord, which: str) -> str | None:
    """Why the parent's checkpoint cannot be loaded (torch-free, nothing in it is run)."""
    path = parent_checkpoint(rec, which)
    if path is None:
        return f"run {rec.id} has no checkpoint folder in the records"
    problem = runfiles.checkpoint_problem(path)
    if problem is None:
        return None
    hint = ""
    if problem == "missing" and not rec.config.get("train", {}).get("checkpoint", True):
        hint = " (it was trained with train.checkpoint=false)"
    return f"run {rec.id}'s {path.name} ({visible(str(path))}) is {problem}{hint}"


def check_parent(db: Database, cfg: Config, *, counts: dict[str, Any] | None = None,
                 waits: tuple[str, ...] = LIVE) -> RunRecord | None:
    """The parent run ``train.init_from`` names, checked (torch-free); None without one.

    Refused, in one line naming ``train.init_from``: ``arm:NAME`` (a sweep file's, resolved
    only there); a run that is not in the records; one that is not completed, unless its
    status is in ``waits`` (by default a live one, queued or running: a queued child waits for
    it, :func:`mfm.store.queue.claim_next`, and is checked in full when it starts); a completed
    one whose checkpoint (``last.pt``, or ``best.pt`` with ``train.init_checkpoint=best``) is
    missing or damaged; another network (``model.name``, the classifier's kind) or another
    class count (the parent's recorded counts against this run's data: ``counts``, the
    :func:`check_data` preview of ``cfg.data``, is computed when not given and the parent has
    recorded its counts)."""
    ref = cfg.train.init_from
    if not ref:
        return None
    if arm_name(ref) is not None or not ref.isdigit():
        raise PreflightError(f"train.init_from: {visible(repr(ref), 80)} names a sweep arm: "
                             "arm:NAME is resolved only inside a sweep file; give the parent's "
                             "run id (see mfm runs)")
    rec = repo.get_run(db, int(ref))
    if rec is None:
        raise PreflightError(f"train.init_from: no run {ref} in the records (see mfm runs)")
    if rec.status != "completed" and rec.status not in waits:
        raise PreflightError(f"train.init_from: run {ref} is {rec.status}, not completed: "
                             f"resume it first (mfm resume {ref}) or start from a completed "
                             "run")
    if rec.status == "completed" and (why := _checkpoint_problem(rec, cfg.train.init_checkpoint)):
        raise PreflightError(f"train.init_from: {why}")
    if why := fit_problem(rec.config, cfg):
        raise PreflightError(f"train.init_from: run {ref} {why}")
    theirs = (rec.class_counts or {}).get("train")
    if isinstance(theirs, list):
        if counts is None:
            counts = check_data(cfg)
        if why := classes_problem(len(theirs), len(counts.get("train", []))):
            raise PreflightError(f"train.init_from: run {ref} {why}")
    return rec
