"""The application object carried on the click context: where the records live."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from mfm.cli.errors import UserError, store_error
from mfm.store import Database, StoreError, resolve_db_target
from mfm.store.db import BUSY_TIMEOUT_MAX_MS, BUSY_TIMEOUT_MS
from mfm.store.faults import hide_password
from mfm.store.fsinfo import warn_if_network_fs
from mfm.store.paths import runs_root
from mfm.text import visible

__all__ = ["App", "pass_app", "busy_timeout_ms"]

BUSY_TIMEOUT_ENV = "MFM_BUSY_TIMEOUT_MS"


def busy_timeout_ms(env: Mapping[str, str]) -> int:
    """``MFM_BUSY_TIMEOUT_MS`` (a positive whole number of milliseconds), else the default:
    how long a command waits for another process's write lock before saying it is busy."""
    raw = env.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return BUSY_TIMEOUT_MS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value <= BUSY_TIMEOUT_MAX_MS:
        raise UserError(f"{BUSY_TIMEOUT_ENV}: expected a positive whole number of "
                        f"milliseconds (at most {BUSY_TIMEOUT_MAX_MS}), "
                        f"got {visible(repr(raw), 40)}")
    return value


@dataclass
class App:
    db_target: str

    def open_db(self, *, upgrade: bool = True) -> Database:
        """Open the records (once per command); warns once if they sit on NFS & co.
        ``MFM_BUSY_TIMEOUT_MS`` sets how long a write waits for another process's lock.
        ``upgrade=False`` looks at the schema without creating or migrating it (``mfm db``).
        Opening refuses an older shared (PostgreSQL) schema until ``mfm db upgrade``."""
        timeout = busy_timeout_ms(os.environ)
        try:
            db = Database(self.db_target, busy_timeout_ms=timeout, upgrade=upgrade)
        except StoreError as e:
            raise store_error(e) from None
        warn_if_network_fs(self.db_target)
        return db

    @property
    def shown(self) -> str:
        """The database as it may be shown or logged: a URL's password masked."""
        return visible(hide_password(self.db_target))

    def runs_root(self) -> Path:
        """Checkpoints and logs: beside a SQLite file, else ./runs (MFM_RUNS_DIR wins)."""
        return runs_root(self.db_target, os.environ)


def pass_app(f: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command ``--db`` of its own and pass it the App: the command's ``--db`` wins over
    the group's, which wins over ``MFM_DB``, which wins over ./experiments.db."""

    @click.option("--db", "db", metavar="PATH|URL", default=None,
                  help="Records: SQLite path or SQLAlchemy URL [env MFM_DB; default "
                       "./experiments.db].")
    @click.pass_context
    @functools.wraps(f)
    def wrapper(ctx: click.Context, /, *args: Any, db: str | None, **kwargs: Any) -> Any:
        group_db = ctx.find_root().params.get("db")
        try:
            app = App(resolve_db_target(db or group_db, os.environ))
        except StoreError as e:
            raise store_error(e) from None
        return ctx.invoke(f, app, *args, **kwargs)

    return wrapper
