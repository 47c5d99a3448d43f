"""The ``Database`` object: where the records live, how connections are set up, and the one
way to get a session (``session_scope``). Nothing here is module-level state.

Two backends: a SQLite file (the embedded default: WAL, busy_timeout, BEGIN IMMEDIATE for
writers) and PostgreSQL through psycopg 3 (``postgresql+psycopg://user@host/dbname``; the
``postgres`` extra installs the driver). Messages name a URL without its password."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import URL, Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

from mfm.store import faults, migrate, schema
from mfm.store.errors import DamagedStore, StoreError
from mfm.store.faults import hide_password
from mfm.store.paths import SQLITE_HEADER, resolve_db_target, sqlite_file_fault
from mfm.text import visible

__all__ = ["Database", "StoreError", "resolve_db_target", "DEFAULT_DB", "SQLITE_HEADER",
           "BUSY_TIMEOUT_MS", "BUSY_TIMEOUT_MAX_MS", "hide_password"]

DEFAULT_DB = "experiments.db"
BUSY_TIMEOUT_MS = 30_000
BUSY_TIMEOUT_MAX_MS = 2 ** 31 - 1  # SQLite keeps it in a C int
# Marks the engine variant whose transactions only read (plain deferred BEGIN).
_READ_ONLY_OPTION = "mfm_read_only"
BACKENDS = ("sqlite", "postgresql")
# Seconds a PostgreSQL connection attempt may take (a host that drops packets would
# otherwise hang every command); a connect_timeout in the URL wins.
PG_CONNECT_TIMEOUT_S = 10


def _sqlite_file(url: URL) -> Path | None:
    """The file behind a SQLite URL; None for other backends, memory and ``file:`` URIs."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(os.path.abspath(os.path.expanduser(database)))


def _parse_target(target: str) -> tuple[URL, Path | None, str]:
    """(URL, SQLite file or None, how to name it in messages)."""
    if "://" in target:
        try:
            url = make_url(target)
        except (exc.ArgumentError, ValueError) as e:
            raise StoreError(hide_password(f"{target!r} is not a valid database URL ({e})"),
                             field="db") from None
        path = _sqlite_file(url)
        if path is not None:
            return url, path, str(path)
        # unquoted for reading (?host=/run/postgresql, not %2Frun%2Fpostgresql)
        return url, None, unquote(url.render_as_string(hide_password=True))
    if target == ":memory:":
        return URL.create("sqlite", database=":memory:"), None, target
    path = Path(os.path.abspath(os.path.expanduser(target)))
    return URL.create("sqlite", database=str(path)), path, target


def _check_file(path: Path, shown: str) -> None:
    """Refuse, before anything is created or written, what SQLite would choke on or damage
    (the rule is mfm.store.paths', which the TUI also applies before its first frame)."""
    if (fault := sqlite_file_fault(path, shown)) is not None:
        raise StoreError(fault, field="db")


def _immutable_creator(path: Path, timeout: float) -> Callable[[], sqlite3.Connection]:
    """Connections to a file on a read-only file system. A WAL reader needs the -wal and -shm
    files beside the database, which cannot be created there; ``immutable=1`` tells SQLite
    that nothing can change the file, which holds while the file system is read-only."""
    uri = f"file:{quote(str(path))}?mode=ro&immutable=1"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)

    return connect


def _sqlite_connect_listener(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's recipe for pysqlite: stop the driver from issuing its own (late,
        # DML-only) BEGIN; _on_begin below issues ours.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    return on_connect


def _on_begin(conn: Any) -> None:
    # Writers take the write lock up front (BEGIN IMMEDIATE), so a busy database makes them
    # wait on busy_timeout. A deferred transaction that reads and then writes cannot wait: its
    # lock upgrade fails at once with "database is locked" when another writer got in between.
    # Read-only sessions use a deferred BEGIN: one consistent WAL snapshot, no write lock.
    if conn.get_execution_options().get(_READ_ONLY_OPTION):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The records: a SQLite file path (relative or absolute) or any SQLAlchemy URL.

    Opening it checks the file, sets up connections and sees to the schema: an empty
    database gets it; an older SQLite file is upgraded in place; an older database on a
    server (shared by hosts that may still run the older mfm) is refused with a one-line
    ``OlderSchema`` until ``mfm db upgrade``; a newer one is refused with ``NewerSchema``
    (see :meth:`ensure_schema`). Use it as a context manager, or call ``close()``.

    >>> with Database(str(tmp_path / "experiments.db")) as db:   # doctest: +SKIP
    ...     with db.session_scope() as session:
    ...         ...

    ``busy_timeout_ms``: how long a writer waits for another process's write lock before it
    gives up with a ``StoreError`` saying the database is busy (SQLite).

    ``upgrade=False`` opens without looking at the schema or changing it (``mfm db current``
    looks at a database through it; :func:`mfm.store.admin.upgrade` then changes it).

    PostgreSQL: ``postgresql+psycopg://user[:password]@host[:port]/dbname`` (a plain
    ``postgresql://`` means psycopg 3 too); ``?host=/socket/dir`` for a Unix socket. Opening
    creates the schema (an upgrade migrates it) under an advisory lock, so supervisors on
    several hosts may open it at once. An unreachable server, a wrong password, a missing
    database or role, or an unknown driver come out as one-line ``StoreError``s naming the
    URL without its password.

    Faults of the file itself (damaged, not a database, read-only, locked for too long) come
    out as one-line ``StoreError``s naming the file, and nothing is written to it. A database
    on a read-only file system opens for reading (writes are refused with such an error).
    """

    def __init__(self, target: str, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 upgrade: bool = True):
        if (isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int)
                or not 0 < busy_timeout_ms <= BUSY_TIMEOUT_MAX_MS):
            raise ValueError(f"busy_timeout_ms must be a positive integer up to "
                             f"{BUSY_TIMEOUT_MAX_MS}, not {busy_timeout_ms!r}")
        self.busy_timeout_ms = busy_timeout_ms
        url, self.path, self.display = _parse_target(target)
        self.target = target if url.password is None else self.display
        if self.path is not None:
            _check_file(self.path, self.display)
        backend = url.get_backend_name()
        if backend not in BACKENDS:
            raise StoreError(f"{self.display}: the {backend!r} backend is not supported; "
                             "use a SQLite file or postgresql+psycopg://user@host/dbname",
                             field="db")
        if url.drivername == "postgresql":  # SQLAlchemy's default would be psycopg2
            url = url.set(drivername="postgresql+psycopg")
        self._password = url.password
        self.is_sqlite = backend == "sqlite"
        # Read-only media: open immutable, unless a -wal file is there (its commits would be
        # skipped; with the -shm beside it SQLite reads such a database as it is).
        self.read_only_media = (self.path is not None and self.path.is_file()
                                and faults.on_read_only_fs(self.path.parent)
                                and not Path(f"{self.path}-wal").exists())
        # The same for a file this user may only read (another user's records, a folder
        # without write permission): listing works, a write says why it cannot.
        self.read_only_access = self.read_only_media or (
            self.path is not None and self.path.is_file()
            and not Path(f"{self.path}-wal").exists()
            and not (faults.writable(self.path) and faults.writable(self.path.parent)))
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
            if self.read_only_access:
                assert self.path is not None
                kwargs["creator"] = _immutable_creator(self.path, busy_timeout_ms / 1000)
        else:
            # A long-lived supervisor outlives server restarts: test pooled connections.
            kwargs["pool_pre_ping"] = True
            if "connect_timeout" not in url.query:
                kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except exc.NoSuchModuleError:
            raise StoreError(f"{self.display}: unknown database driver {url.drivername!r}; "
                             "use postgresql+psycopg://user@host/dbname or a SQLite file",
                             field="db") from None
        except ImportError as e:
            hint = (" (pip install 'mfm-workbench[postgres]')"
                    if url.get_driver_name() == "psycopg" else "")
            raise StoreError(f"{self.display}: the {url.get_driver_name()} driver is not "
                             f"installed{hint}: {e}", field="db") from None
        except exc.ArgumentError as e:
            raise StoreError(self._hide(f"cannot open {self.display}: {e}"),
                             field="db") from None
        # Errors of the driver itself, as raw connections (PRAGMA journal_mode) raise them.
        dbapi = getattr(self.engine.dialect, "loaded_dbapi", None)
        driver_error = getattr(dbapi, "Error", None)
        self._driver_errors: tuple[type[BaseException], ...] = (
            (exc.DBAPIError, driver_error) if isinstance(driver_error, type)
            else (exc.DBAPIError,))
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect_listener(busy_timeout_ms))
            event.listen(self.engine, "begin", _on_begin)
        self._read_engine = self.engine.execution_options(**{_READ_ONLY_OPTION: True})
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(bind=self._read_engine, expire_on_commit=False)
        self._pid = os.getpid()
        if upgrade:
            try:
                self.ensure_schema()
            except BaseException:
                self.engine.dispose()
                raise

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        """Which records these are, as a run's folder remembers them (mfm.runfiles.OWNER): a
        SQLite file's real path (a copy elsewhere is other records); "" for a server's
        database (hosts may reach one server by several names, and a copy of it is made with
        the server's own tools, not by copying a file)."""
        if self.path is not None:
            return os.path.realpath(self.path)
        return ""

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.target!r})"

    def _after_fork(self) -> None:
        """A forked child must not reuse the parent's pooled connections."""
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def _target(self) -> faults.Target:
        return faults.Target(self.display, self.path, self.is_sqlite, self.read_only_media,
                             self.busy_timeout_ms, self.engine.url.username, self._password)

    def _hide(self, text: str) -> str:
        """``text`` without this database's password (nor any URL's)."""
        return self._target().hide(text)

    def _error(self, e: BaseException) -> StoreError:
        """One line for a database error (see :mod:`mfm.store.faults`)."""
        return faults.database_error(self._target(), e)

    # -- sessions ----------------------------------------------------------------------------

    @contextmanager
    def session_scope(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session that commits at the end, rolls back on error and is always closed.

        Database errors come out as one-line ``StoreError``s. ``read_only=True`` starts a
        deferred transaction (a consistent snapshot that takes no write lock); the default
        takes SQLite's write lock at BEGIN so concurrent writers queue on busy_timeout.
        """
        self._after_fork()
        session = (self._read_sessions if read_only else self._sessions)()
        try:
            yield session
            session.commit()
        except self._driver_errors as e:
            self._rollback_quietly(session)
            raise self._error(e) from e
        except BaseException:
            self._rollback_quietly(session)
            raise
        finally:
            session.close()

    @staticmethod
    def _rollback_quietly(session: Session) -> None:
        try:
            session.rollback()
        except exc.SQLAlchemyError:
            pass

    # -- schema ------------------------------------------------------------------------------

    def schema_version(self) -> int | None:
        """The stored ``schema_info`` version (None: no mfm schema yet; 1..4 before Alembic,
        ``schema.SCHEMA_VERSION`` since); a ``StoreError`` for a damaged file or a version
        that is not a whole number. The Alembic revision: ``mfm.store.admin``."""
        return self.schema_state().legacy_version

    def schema_state(self) -> migrate.SchemaState:
        """What the database holds (tables, schema_info version, Alembic revision); reads
        only."""
        self._after_fork()
        try:
            with self._read_engine.connect() as conn:
                return self._read_state(conn)
        except self._driver_errors as e:
            raise self._error(e) from e

    def _damaged(self, e: schema.SchemaVersionError) -> StoreError:
        return DamagedStore(f"'{self.display}' is damaged or not mfm records ({e}); restore it "
                            "from a backup or point --db at another file")

    def _read_state(self, conn: Any) -> migrate.SchemaState:
        try:
            return migrate.read_state(conn)
        except schema.SchemaVersionError as e:
            raise self._damaged(e) from None

    def check_state(self, state: migrate.SchemaState) -> None:
        """The rule every open applies to what the database holds (damaged, foreign, a newer
        mfm's): a one-line StoreError, or nothing. ``mfm db current`` and ``upgrade`` read a
        database through it too, so they never disagree with the other commands."""
        self._check_state(state)

    def _check_state(self, state: migrate.SchemaState) -> None:
        try:
            migrate.check_state(state, self.display)
        except schema.SchemaVersionError as e:
            raise self._damaged(e) from None

    def ensure_schema(self, *, upgrade_older: bool = False) -> None:
        """Create the schema in an empty database; bring an older one to the head revision
        when this is a SQLite file (one user's records) or ``upgrade_older`` asks for it
        (``mfm db upgrade``, :func:`mfm.store.admin.upgrade`); refuse a newer one
        (``NewerSchema``).

        An older database on a server is shared by hosts that may still run the older mfm:
        without ``upgrade_older`` it is refused (``OlderSchema``, one line saying to run
        ``mfm db upgrade`` once every host is ready) and nothing is changed.

        Nothing is written to a file before its contents are known to be mfm records (or
        nothing at all): a damaged or foreign file is refused as it is. One process creates
        or migrates; concurrent openers wait for it (SQLite's write lock, a PostgreSQL
        advisory lock) and then find the work done."""
        state = self.schema_state()
        self._check_state(state)
        try:
            if self.is_sqlite and self.path is not None and not self.read_only_access:
                self._ensure_wal(has_records=state.is_mfm)
            if not migrate.needs_upgrade(state):
                return
            self._refuse_unless_allowed(state, upgrade_older)
            with self.engine.begin() as conn:  # BEGIN IMMEDIATE on SQLite
                migrate.lock(conn)
                state = self._read_state(conn)
                self._check_state(state)
                if migrate.needs_upgrade(state):
                    self._refuse_unless_allowed(state, upgrade_older)
                    migrate.bring_to_head(conn, state)
        except self._driver_errors as e:
            raise self._error(e) from e

    def _refuse_unless_allowed(self, state: migrate.SchemaState, upgrade_older: bool) -> None:
        if not upgrade_older and not migrate.upgrades_on_open(state, is_sqlite=self.is_sqlite):
            raise migrate.older_schema(state, self.display)

    def _ensure_wal(self, *, has_records: bool) -> None:
        """WAL lets readers (the TUI) read while a run writes; it persists in the file.

        Switching rewrites the file's header, so an existing file is checked first (once: the
        mode stays). A file that cannot be written keeps its mode and can still be read."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("PRAGMA journal_mode")
                row = cursor.fetchone()
                assert row is not None  # a PRAGMA query answers with one row
                mode = str(row[0]).lower()
                if mode == "wal":
                    return
                if has_records:
                    cursor.execute("PRAGMA quick_check(1)")
                    row = cursor.fetchone()
                    assert row is not None
                    found = str(row[0])
                    if found != "ok":
                        said = [line for line in found.splitlines()
                                if line.strip() and not line.startswith("***")]
                        raise DamagedStore(
                            f"'{self.display}' is damaged (quick_check: "
                            f"{visible((said or [found])[0], 80)}); "
                            "restore it from a backup or point --db at another file")
                try:
                    cursor.execute("PRAGMA journal_mode=WAL")
                except self._driver_errors as e:
                    why = str(e).lower()
                    if not has_records or "readonly" not in why:
                        raise
            finally:
                cursor.close()
        finally:
            raw.close()
