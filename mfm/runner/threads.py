"""The launcher's side of the thread policy (the plan: mfm.threads): the environment a run
process starts with, planned from its resolved config before it imports torch. Torch-free."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from mfm.config import Config
from mfm.threads import (
    PLAN_VARS,
    ThreadPlan,
    apply_before_torch,
    available_cores,
    plan_threads,
)

__all__ = ["child_env", "prepare_headless", "threads_setting"]


def threads_setting(config: Mapping[str, Any]) -> int | str:
    """``train.threads`` of a resolved config (a nested dict); ``auto`` when absent (configs
    recorded before the key existed)."""
    train = config.get("train")
    value = train.get("threads", "auto") if isinstance(train, Mapping) else "auto"
    return value if (value in ("auto", "follow") or isinstance(value, int)) else "auto"


def child_env(config: Mapping[str, Any], *, runs: int, environ: Mapping[str, str] | None = None,
              cores: int | None = None) -> tuple[dict[str, str], ThreadPlan]:
    """The environment of a run process the supervisor starts (``environ`` + the plan), with
    ``runs`` runs sharing this host's cores (the supervisor's slots), and the plan."""
    base = dict(os.environ if environ is None else environ)
    if "MFM_THREADS" in base:  # a plan inherited from whoever started the supervisor: not ours
        for var in PLAN_VARS:
            base.pop(var, None)
    plan = plan_threads(threads_setting(config), cores=cores or available_cores(), runs=runs,
                        environ=base)
    return {**base, **plan.env()}, plan


def prepare_headless(config: Config | Mapping[str, Any],
                     environ: MutableMapping[str, str] | None = None) -> ThreadPlan | None:
    """A headless run (``mfm run --headless``) calls this with its config (a Config or the
    resolved dict) BEFORE its first torch import: the plan goes into this process's
    environment (one run: the cores are all its own). None when torch is already loaded (the
    engine then still sets the thread count, but OpenMP's waiting policy is what it read) or a
    plan is already there."""
    setting = config.train.threads if isinstance(config, Config) else threads_setting(config)
    return apply_before_torch(setting, runs=1, environ=environ)
