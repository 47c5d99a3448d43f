"""What the app remembers between sessions, per database: the runs screen's filter and sort.

One small JSON file, ``$MFM_STATE_DIR/tui.json`` (tests), else ``$XDG_STATE_HOME/mfm/tui.json``,
else ``~/.local/state/mfm/tui.json``, keyed by the database target (a SQLite file by its
absolute path, a URL as given). A file that cannot be read or written is ignored: remembering
is a convenience, never a reason to fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["state_path", "target_key", "load_state", "save_state"]

MAX_TARGETS = 50  # the most recently used databases kept


def state_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("MFM_STATE_DIR"):
        return Path(env["MFM_STATE_DIR"]) / "tui.json"
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "mfm" / "tui.json"


def target_key(target: str) -> str:
    """A SQLite file by its absolute path (the same file whatever the working folder)."""
    if "://" in target or target.startswith("file:"):
        return target
    return os.path.abspath(os.path.expanduser(target))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_state(target: str, path: Path | None = None) -> dict[str, Any]:
    """What was remembered for this database ({} when nothing, or the file is unreadable)."""
    entry = _read(path or state_path()).get(target_key(target))
    return dict(entry) if isinstance(entry, dict) else {}


def save_state(target: str, values: dict[str, Any], path: Path | None = None) -> None:
    """Remember ``values`` for this database (written atomically; errors ignored)."""
    path = path or state_path()
    data = _read(path)
    key = target_key(target)
    data.pop(key, None)
    data[key] = values
    while len(data) > MAX_TARGETS:
        data.pop(next(iter(data)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
