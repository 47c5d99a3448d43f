"""A trained MFM modulator network as a file, and whether it fits another run. Torch-free.

A finished MFM run with ``mfm.modulator=network`` writes ``modulator.pt`` (the weights and what
they are: :data:`MODULATOR_KIND`, ``describe``) and, beside it, ``modulator.json``: the same
description in plain JSON, plus the model and site kind it was trained on. Queueing a transfer
(``mfm.modulator_from``) reads only the JSON (:func:`check_description`), so the caller (mfm-tui,
``mfm run``) never loads torch; the run process loads the ``.pt`` and checks it against the model
it built (:func:`check_transfer`, in ``mfm.methods.mfm``'s set-up).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["DESCRIPTION_FILE", "MODULATOR_FILE", "MODULATOR_KIND", "ModulatorFileError",
           "check_description", "check_transfer", "description_path", "file_description",
           "read_description"]

MODULATOR_FILE = "modulator.pt"
DESCRIPTION_FILE = "modulator.json"
MODULATOR_KIND = "mfm-modulator/1"


class ModulatorFileError(ValueError):
    """A modulator checkpoint that cannot be used (one line, names mfm.modulator_from)."""


def description_path(modulator_path: str | Path) -> Path:
    """The JSON description beside a modulator file (``modulator.pt`` -> ``modulator.json``)."""
    return Path(modulator_path).with_suffix(".json")


def file_description(describe: dict[str, Any], *, model: str, sites: str, hidden: int,
                     num_classes: int) -> dict[str, Any]:
    """What ``modulator.json`` holds: the modulator's ``describe()`` (sites -> channels, form,
    source, inputs, bound, base_loss), the model and site kind (``mfm.sites``) it was trained
    on, its hidden width and number of classes."""
    return {"kind": MODULATOR_KIND, "describe": describe, "model": model, "site_kind": sites,
            "hidden": hidden, "num_classes": num_classes}


def read_description(path: str | Path) -> dict[str, Any]:
    """Read a ``modulator.json``; ModulatorFileError (one line) if it is not one."""
    p = Path(path)
    try:
        desc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModulatorFileError(f"mfm.modulator_from: {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModulatorFileError(f"mfm.modulator_from: {str(p)!r} is not a modulator "
                                 f"description ({type(e).__name__})") from None
    if (not isinstance(desc, dict) or desc.get("kind") != MODULATOR_KIND
            or not isinstance(desc.get("describe"), dict)
            or not isinstance(desc["describe"].get("sites"), dict)):
        raise ModulatorFileError(f"mfm.modulator_from: {str(p)!r} is not a modulator "
                                 f"description (written by a finished mfm run with "
                                 f"mfm.modulator=network)")
    return desc


def _check_options(saved: dict[str, Any], want: dict[str, Any]) -> None:
    for k in ("form", "source", "inputs"):
        if saved[k] != want[k]:
            raise ModulatorFileError(f"mfm.modulator_from: the saved modulator has mfm."
                                     f"{'modulator' if k == 'source' else k}={saved[k]!r}, "
                                     f"this run asks for {want[k]!r}")
    # A loss/frequency network reads each sample's loss under the run's base loss; files written
    # before the key was recorded were trained when ce was the only default.
    saved_loss = saved.get("base_loss", "ce")
    if (want["source"] == "network" and want["inputs"] == "loss_freq"
            and saved_loss != want["base_loss"]):
        raise ModulatorFileError(
            f"mfm.modulator_from: the saved modulator reads the loss of mfm.base_loss="
            f"{saved_loss}, this run asks for {want['base_loss']} "
            f"(set mfm.base_loss={saved_loss})")


def _shapes(sites: dict[str, int]) -> str:
    return ", ".join(f"{n}:{c}" for n, c in sites.items())


def check_transfer(state: dict[str, Any], want: dict[str, Any]) -> None:
    """Raise ModulatorFileError unless the saved modulator (``state["describe"]``) fits a run
    whose modulator would be ``want`` (``expected_describe`` of its model and options)."""
    saved = state["describe"]
    _check_options(saved, want)
    same_names = list(saved["sites"]) == list(want["sites"])
    if not same_names or (want["inputs"] == "features" and saved["sites"] != want["sites"]):
        raise ModulatorFileError(
            f"mfm.modulator_from: site/channel mismatch: the saved modulator has "
            f"[{_shapes(saved['sites'])}], this model has [{_shapes(want['sites'])}]")


def check_description(desc: dict[str, Any], opts: Any) -> None:
    """The queue-time part of :func:`check_transfer`, from ``modulator.json`` and the run's
    ``mfm`` options alone: the options must match, and so must the site kind (sites of another
    kind never have the same names). What only the built model can tell (the channels, or the
    block sites of another depth) is checked by the run process when it starts."""
    want = {"form": opts.form, "source": opts.modulator, "inputs": opts.inputs,
            "base_loss": opts.base_loss}
    _check_options(desc["describe"], want)
    kind = desc.get("site_kind")
    if kind is not None and kind != opts.sites:
        raise ModulatorFileError(
            f"mfm.modulator_from: site/channel mismatch: the saved modulator has "
            f"[{_shapes(desc['describe']['sites'])}] (mfm.sites={kind}), this run asks for "
            f"mfm.sites={opts.sites}")
