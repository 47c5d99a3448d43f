"""The training engine: fit / train_one_epoch / evaluate, metrics, checkpoints.

Knows nothing of SQLite, click or Textual: it takes a config, prepared data and callbacks.
"""

from mfm.engine.callbacks import Callbacks, EpochResult, Recorder, StartInfo, Tee
from mfm.engine.device import resolve_device, seed_everything
from mfm.engine.divergence import Diverged
from mfm.engine.fit import CheckpointMissing, FitResult, RunStopped, evaluate, fit, train_one_epoch

__all__ = ["Callbacks", "CheckpointMissing", "Diverged", "EpochResult", "FitResult", "Recorder", "RunStopped", "StartInfo", "Tee",
           "evaluate", "fit", "resolve_device", "seed_everything", "train_one_epoch"]
