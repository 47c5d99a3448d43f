"""The files of a run's folder, named once: the engine writes them, the runner, the store's
queue and the front ends look for them. Torch-free and dependency-free, so every layer may
import it."""

from __future__ import annotations

from pathlib import Path

__all__ = ["LAST", "BEST", "LOG", "last_checkpoint", "has_checkpoint", "log_path",
           "checkpoint_problem", "OWNER", "foreign_owner", "claim_folder"]

#: the checkpoint a resume continues from: the last completed epoch, with everything that
#: trains (weights, optimiser, schedule, modulation, random state) and that epoch's results
LAST = "last.pt"
#: the weights of the best epoch so far (by validation accuracy when the run has a
#: validation split, else by test accuracy)
BEST = "best.pt"
#: what a background run's process writes (stdout and stderr)
LOG = "run.log"
#: names the records a run's folder belongs to (``Database.identity``), so that the run of a
#: copied database never reads or writes the original's folder
OWNER = ".mfm-records"


def last_checkpoint(checkpoint_dir: str | Path) -> Path:
    """``checkpoint_dir/last.pt``."""
    return Path(checkpoint_dir) / LAST


def has_checkpoint(checkpoint_dir: str | Path | None) -> bool:
    """Is there a ``last.pt`` to resume from in ``checkpoint_dir``?"""
    return checkpoint_dir is not None and last_checkpoint(checkpoint_dir).is_file()


def log_path(runs_root: Path, run_id: int, recorded: str | None) -> Path:
    """A run's log: the path its record holds, else ``runs_root/ID/run.log``."""
    return Path(recorded) if recorded else runs_root / str(run_id) / LOG


#: what a checkpoint's pickle may name: the classes and functions torch's own tensors and our
#: state dicts are rebuilt with (anything else would run code when loaded)
_SAFE_GLOBALS = frozenset({
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"), ("torch", "device"),
})
_STORAGES = frozenset(f"{kind}Storage" for kind in (
    "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
    "ComplexFloat", "ComplexDouble"))


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be a checkpoint of ours, in a few words, or None when it reads as
    one; torch-free, and nothing in it is run. Checked: present and not empty, a whole zip
    archive (every member's CRC: a truncated or altered file is caught), one pickle in it, and
    that pickle naming only tensor-rebuilding globals (a file carrying code is refused)."""
    import pickletools
    import zipfile

    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable: {e.strerror or e}"
    if size == 0:
        return "empty"
    try:
        with zipfile.ZipFile(p) as z:
            if z.testzip() is not None:
                return "corrupt: a member fails its checksum"
            pickles = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                return "not a PyTorch checkpoint"
            data = z.read(pickles[0])
    except zipfile.BadZipFile:
        with open(p, "rb") as f:
            head = f.read(4)
        return "truncated" if head == b"PK\x03\x04" else "not a PyTorch checkpoint"
    except (OSError, EOFError, ValueError) as e:
        return f"unreadable: {e}"
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(arg))
            named: tuple[str, str] | None = None
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                named = (module, name)
            elif op.name == "STACK_GLOBAL":
                named = (strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?")
            elif op.name in ("INST", "OBJ"):
                return "it would run code when loaded (an object built by the pickle)"
            if named is not None and named not in _SAFE_GLOBALS and not (
                    named[0] == "torch" and named[1] in _STORAGES):
                return f"it would run code when loaded ({named[0]}.{named[1]})"
    except (ValueError, IndexError) as e:
        return f"its pickle is damaged ({e})"
    return None


def foreign_owner(checkpoint_dir: str | Path, identity: str) -> str | None:
    """The records another than ``identity`` that ``checkpoint_dir`` belongs to, or None
    (ours, or a folder from before the marker existed, or no folder yet, or records with no
    identity: a server's database)."""
    if not identity:
        return None
    try:
        owner = (Path(checkpoint_dir) / OWNER).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        return None
    return owner if owner and owner != identity else None


def claim_folder(checkpoint_dir: str | Path, identity: str) -> None:
    """Mark ``checkpoint_dir`` (created if needed) as the folder of a run of ``identity``
    (nothing to mark for records with no identity)."""
    folder = Path(checkpoint_dir)
    if not identity:
        folder.mkdir(parents=True, exist_ok=True)
        return
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / OWNER
    if not marker.exists():
        marker.write_text(identity + "\n", encoding="utf-8")
