"""Checks made before a run is recorded (or, for a queued run, before it starts): the data
is there and splittable, and a transferred modulator exists and fits. Errors are one line.

Queueing (:func:`check_data`, :func:`check_modulator`) loads no torch: it reads labels and the
modulator's ``modulator.json``. The run process (and a foreground run) makes the full check,
``mfm.runner.run_options.method_options``, which loads the modulator and builds the model (a
module of its own, so that nothing queueing runs even refers to torch)."""

from __future__ import annotations

import os

from mfm.config import Config, ConfigError
from mfm.crashlog import describe_os_error
from mfm.methods.transfer import (
    DESCRIPTION_FILE,
    MODULATOR_FILE,
    ModulatorFileError,
    check_description,
    description_path,
    read_description,
)
from mfm.store import Database, repo
from mfm.text import one_line

__all__ = ["PreflightError", "check_data", "check_modulator"]


# Data errors say what was looked for where and how to get it: longer than most one-liners.
DATA_MESSAGE_MAX = 1000


class PreflightError(ValueError):
    """One line, naming the key."""


def check_data(cfg: Config) -> None:
    """The data root holds the data and the split is possible (labels only, no torch).

    Every file the run will load is opened and checked (IDX headers and lengths, CIFAR
    pickles through the restricted unpickler, the imagefolder layout), so a bad data root
    is one line here and nothing is recorded. Image contents (imagefolder decoding) are
    checked only when the run loads them."""
    from mfm.data.sources import preview_counts

    try:
        preview_counts(cfg.data)
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
