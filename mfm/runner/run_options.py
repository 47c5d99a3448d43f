"""What a run needs from the records when it starts, fully checked: for an MFM transfer, the
modulator file loaded and checked against the model this run builds; for a stage-2 run
(``train.init_from``), its parent's checkpoint file. Loads torch; called only by the process
that trains the run (the run child, a foreground run). Queueing makes the torch-free checks
of :mod:`mfm.runner.preflight`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mfm.config import Config, ConfigError, config_from_dict
from mfm.methods.transfer import ModulatorFileError
from mfm.runner.preflight import (
    PreflightError,
    _modulator_path,
    _transfers,
    check_parent,
    parent_checkpoint,
)
from mfm.store import Database

__all__ = ["resolve_modulator", "method_options", "resolve_init"]


def resolve_modulator(db: Database, cfg: Config) -> str:
    """``mfm.modulator_from`` (a run id or a file) -> a fully checked modulator file path: the
    file is loaded and checked against the model this run builds (loads torch)."""
    from mfm.data import load_source
    from mfm.methods.mfm import check_transfer, expected_describe, load_modulator_file
    from mfm.models import create_model
    from mfm.models.sites import list_sites

    path = _modulator_path(db, cfg.mfm.modulator_from)
    try:
        state = load_modulator_file(path)
        source = load_source(cfg.data, download=False)
        model = create_model(cfg.model.name, num_classes=source.num_classes,
                             in_channels=source.in_channels)
        check_transfer(state, expected_describe(list_sites(model), cfg.mfm))
    except (ModulatorFileError, ConfigError) as e:
        raise PreflightError(str(e)) from None
    return os.path.abspath(path)


def method_options(db: Database, config: Config | dict[str, Any]) -> dict[str, Any] | None:
    """What a method needs from the records at start (mfm: the resolved modulator path, after
    the full check). Called by the process that trains the run."""
    cfg = config if isinstance(config, Config) else config_from_dict(config)
    if _transfers(cfg):
        return {"modulator_path": resolve_modulator(db, cfg)}
    return None


def resolve_init(db: Database, config: Config | dict[str, Any],
                 counts: dict[str, Any] | None = None) -> Path | None:
    """``train.init_from`` -> the parent's checkpoint file (``last.pt`` or ``best.pt``, per
    ``train.init_checkpoint``) as an absolute path, for ``fit(init_from=...)``; None for a
    run from scratch. The full check: :func:`mfm.runner.preflight.check_parent` with the
    parent required to be completed (PreflightError, one line naming ``train.init_from``).
    ``counts``: this run's data preview, when the caller has it."""
    cfg = config if isinstance(config, Config) else config_from_dict(config)
    parent = check_parent(db, cfg, counts=counts, waits=())
    if parent is None:
        return None
    path = parent_checkpoint(parent, cfg.train.init_checkpoint)
    assert path is not None  # check_parent refuses a completed parent without a folder
    return path.absolute()
