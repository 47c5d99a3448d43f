"""What a run's method needs from the records when the run starts, fully checked: for an MFM
transfer, the modulator file loaded and checked against the model this run builds. Loads
torch; called only by the process that trains the run (the run child, a foreground run).
Queueing makes the torch-free checks of :mod:`mfm.runner.preflight`."""

from __future__ import annotations

import os
from typing import Any

from mfm.config import Config, ConfigError, config_from_dict
from mfm.methods.transfer import ModulatorFileError
from mfm.runner.preflight import PreflightError, _modulator_path, _transfers
from mfm.store import Database

__all__ = ["resolve_modulator", "method_options"]


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
