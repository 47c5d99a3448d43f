"""The services' backend: one database target, opened on first use, its run control, and
the errors every service turns into one-line ServiceErrors."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from mfm.text import check_name

if TYPE_CHECKING:
    from mfm.runner.control import RunControl, SupervisorNote
    from mfm.store.db import Database


P = ParamSpec("P")
T = TypeVar("T")


class ServiceError(Exception):
    """Something the user can act on; the message is one line."""


def _check_name(what: str, name: str) -> None:
    """ServiceError with mfm.text.check_name's reason when ``name`` cannot name a record."""
    why = check_name(what, name)
    if why is not None:
        raise ServiceError(why)


def check_target(target: str) -> None:
    """Refuse at once, before the first frame, a SQLite file the records cannot live in: a
    directory, a file that is not SQLite, a folder that does not exist. ServiceError with one
    line naming the file. Other targets (URLs of other backends, ``file:`` URIs) are left to
    ``open``. The rule is mfm.store.paths' (no SQLAlchemy: the first frame stays fast), the
    one the store applies again when it opens the file."""
    from mfm.store.paths import sqlite_file, sqlite_file_problem

    found = sqlite_file(target)
    if found is not None and (problem := sqlite_file_problem(*found)) is not None:
        raise ServiceError(problem)


class Backend:
    """The backend of mfm-tui, for one database target.

    ``runs_root``: checkpoints and logs (default: as ``mfm`` decides, honouring MFM_RUNS_DIR).
    ``clock`` / ``localtime``: "now" and how timestamps become wall-clock fields (tests pass
    fixed ones). ``gpu_probe``: per-GPU utilisation (default NVML). ``start_supervisor``:
    whether queueing starts a detached supervisor when none serves the database;
    ``supervisor_args``: its ``mfm worker`` options (default: mfm.runner.serve's
    ``ON_DEMAND``, as ``mfm run`` starts it).
    """

    def __init__(self, db_target: str, *, runs_root: str | Path | None = None,
                 clock: Callable[[], float] = time.time,
                 localtime: Callable[[float], time.struct_time] = time.localtime,
                 gpu_probe: Callable[[], list[dict[str, float]]] | None = None,
                 start_supervisor: bool = True,
                 supervisor_args: Sequence[str] | None = None):
        self.db_target = db_target
        self._runs_root = Path(runs_root) if runs_root is not None else None
        self.clock = clock
        self.localtime = localtime
        self._gpu_probe = gpu_probe
        self.start_supervisor = start_supervisor
        self.supervisor_args = list(supervisor_args) if supervisor_args is not None else None
        self._db: Database | None = None
        self._control: RunControl | None = None
        self._lock = threading.Lock()
        self.started_supervisors: list[int] = []

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def display(self) -> str:
        """The database as shown to the user (its file name, or the URL)."""
        from mfm.store.faults import hide_password
        from mfm.store.paths import sqlite_path

        target = sqlite_path(self.db_target)
        return hide_password(target) if "://" in target else os.path.basename(target) or target

    def open(self) -> None:
        """Open the records (creating or migrating the schema). ServiceError with one line
        for a file that is not SQLite, a newer schema, a missing directory..."""
        with self._lock:
            if self._db is not None:
                return
            from mfm.store import Database, StoreError

            try:
                self._db = Database(self.db_target)
            except StoreError as e:  # about the target mfm-tui was given with --db / MFM_DB
                raise ServiceError(("--db: " if e.field == "db" else "") + str(e)) from None
            except Exception as e:  # noqa: BLE001 — whatever the driver says, one line
                raise ServiceError(f"cannot open {self.display}: "
                                   f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
                                   ) from None

    @property
    def db(self) -> Database:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    @property
    def control(self) -> RunControl:
        """The run control of this database (mfm.runner.control: the rules of queue, cancel
        and resume that ``mfm`` follows too)."""
        if self._control is None:
            from mfm.runner.control import RunControl
            from mfm.runner.serve import ON_DEMAND, parse_args

            spec = ON_DEMAND if self.supervisor_args is None else parse_args(
                self.supervisor_args)
            self._control = RunControl(self.db, db_target=self.db_target,
                                       runs_root=self.runs_root(), supervisor=spec,
                                       start_supervisor=self.start_supervisor)
        return self._control

    def close(self) -> None:
        with self._lock:
            self._control = None
            if self._db is not None:
                self._db.close()
                self._db = None

    def runs_root(self) -> Path:
        if self._runs_root is not None:
            return self._runs_root
        from mfm.store.paths import runs_root

        return runs_root(self.db_target, os.environ)

    def now(self) -> float:
        return self.clock()

    def _call(self, fn: Callable[Concatenate[Database, P], T], *args: P.args,
              **kwargs: P.kwargs) -> T:
        """Run a store function, turning its errors into one-line ServiceErrors."""
        from mfm.store import StoreError

        try:
            return fn(self.db, *args, **kwargs)
        except StoreError as e:
            raise ServiceError(str(e)) from None

    def _act(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """A run-control action; its refusal (or the records' fault) as a ServiceError."""
        from mfm.runner.control import ControlError
        from mfm.store import StoreError

        try:
            return fn(*args, **kwargs)
        except ControlError as e:
            named = e.field is not None and e.field not in ("run", "sweep")
            raise ServiceError(f"{e.field}: {e.message}" if named else e.message) from None
        except StoreError as e:
            raise ServiceError(str(e)) from None

    def ensure_supervisor(self) -> str:
        """Start a detached supervisor if none serves this database on this host (unless
        this app was built with ``start_supervisor=False``)."""
        return self._note(self._act(self.control.ensure_supervisor))

    def _note(self, note: SupervisorNote) -> str:
        started = note.state == "started" and note.pid is not None
        if started and note.pid is not None:
            self.started_supervisors.append(note.pid)
        return {
            "started": f"started a supervisor, pid {note.pid}",
            "serving": f"supervisor pid {note.pid} serves it",
            "none": "no supervisor serves this database (start one: mfm worker --detach)",
            "elsewhere": f"the supervisor of host {note.host} starts it",
            "slurm": "a Slurm worker takes it",
            "slurm-unserved": "no Slurm worker serves this database yet (mfm worker "
                              "--executor slurm --detach)",
        }[note.state]
