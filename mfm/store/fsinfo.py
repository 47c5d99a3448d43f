"""Is a path on a network filesystem? (SQLite's locking is unreliable there.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from mfm.store.paths import sqlite_path

__all__ = ["NETWORK_FS", "filesystem_type", "on_network_fs", "warn_if_network_fs"]

NETWORK_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "fuse.sshfs", "sshfs",
              "lustre", "gpfs", "glusterfs", "fuse.glusterfs", "ceph", "fuse.ceph", "beegfs",
              "9p", "fuse.s3fs", "fuse.gcsfuse"}


def filesystem_type(path: Path, mounts_text: str | None = None) -> str | None:
    """The fstype of the mount holding ``path`` (longest matching mount point)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", None
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
            best, best_type = mnt, parts[2]
    return best_type


def on_network_fs(path: Path, mounts_text: str | None = None) -> str | None:
    """The network fstype if ``path`` is on one, else None."""
    fs = filesystem_type(path, mounts_text)
    return fs if fs in NETWORK_FS else None


def warn_if_network_fs(db_target: str, stream: TextIO | None = None,
                       mounts_text: str | None = None) -> str | None:
    """Print one clear warning if a SQLite database file is on a network filesystem; return
    the filesystem type (None when local or not SQLite)."""
    target = sqlite_path(db_target)
    if "://" in target:
        return None
    fs = on_network_fs(Path(target).resolve().parent, mounts_text)
    if fs:
        print(f"warning: {target} is on a network filesystem ({fs}); SQLite's locking is not "
              "reliable there, so concurrent runs can corrupt it. Keep the database on a "
              "local disk (--db /local/disk/experiments.db).", file=stream or sys.stderr)
    return fs
