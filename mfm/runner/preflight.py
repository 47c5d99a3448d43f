"""Checks made before a run is recorded (or, for a queued run, before it starts): the data
is there and splittable, and a transferred modulator exists and fits. Errors are one line."""

from __future__ import annotations

import os
from typing import Any

from mfm.config import Config, ConfigError, config_from_dict
from mfm.crashlog import describe_os_error
from mfm.store import Database, repo
from mfm.text import one_line

__all__ = ["PreflightError", "check_data", "resolve_modulator", "method_options"]


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
    from mfm.data import preview_counts

    try:
        preview_counts(cfg.data)
    except ConfigError as e:
        raise PreflightError(one_line(e, limit=DATA_MESSAGE_MAX)) from None
    except OSError as e:  # what the sources did not name themselves (a vanished mount)
        raise PreflightError(one_line(f"data.root: {cfg.data.root or '(default)'}: "
                                      f"{describe_os_error(e)}",
                                      limit=DATA_MESSAGE_MAX)) from None


def resolve_modulator(db: Database, cfg: Config) -> str:
    """``mfm.modulator_from`` (a run id or a file) -> a checked modulator file path."""
    from mfm.data import load_source
    from mfm.methods.mfm import (MODULATOR_FILE, ModulatorFileError, check_transfer,
                                 expected_describe, load_modulator_file)
    from mfm.models import create_model

    ref = cfg.mfm.modulator_from
    if ref.isdigit():
        src = repo.get_run(db, int(ref))
        if src is None:
            raise PreflightError(f"mfm.modulator_from: no run {ref} in the records "
                                 "(see mfm runs)")
        if src.method != "mfm" or src.config.get("mfm", {}).get("modulator") != "network":
            raise PreflightError(f"mfm.modulator_from: run {ref} is not an MFM run with "
                                 f"mfm.modulator=network (it is {src.method})")
        path = os.path.join(src.checkpoint_dir or "", MODULATOR_FILE)
        if not src.checkpoint_dir or not os.path.exists(path):
            raise PreflightError(f"mfm.modulator_from: run {ref} has no saved modulator "
                                 f"(status {src.status}; it is written when the run finishes)")
    else:
        path = ref
    try:
        state = load_modulator_file(path)
        source = load_source(cfg.data, download=False)
        model = create_model(cfg.model.name, num_classes=source.num_classes,
                             in_channels=source.in_channels)
        check_transfer(state, expected_describe(model.sites(), cfg.mfm))
    except (ModulatorFileError, ConfigError) as e:
        raise PreflightError(str(e)) from None
    return os.path.abspath(path)


def method_options(db: Database, config: Config | dict[str, Any]) -> dict[str, Any] | None:
    """What a method needs from the records at start (mfm: the resolved modulator path)."""
    cfg = config if isinstance(config, Config) else config_from_dict(config)
    if cfg.method.name == "mfm" and cfg.mfm.modulator_from:
        return {"modulator_path": resolve_modulator(db, cfg)}
    return None
