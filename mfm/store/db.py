"""The ``Database`` object: where the records live, how connections are set up, and the one
way to get a session (``session_scope``). Nothing here is module-level state."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, exc, make_url
from sqlalchemy.orm import Session, sessionmaker

from mfm.store import schema

__all__ = ["Database", "StoreError", "resolve_db_target", "DEFAULT_DB", "SQLITE_HEADER",
           "BUSY_TIMEOUT_MS"]

DEFAULT_DB = "experiments.db"
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 30_000
# Marks the engine variant whose transactions only read (plain deferred BEGIN).
_READ_ONLY_OPTION = "mfm_read_only"


class StoreError(Exception):
    """A problem with the records a user can act on; its message is always one line."""

    def __init__(self, message: object):
        lines = [line.strip() for line in str(message).splitlines() if line.strip()]
        super().__init__(" ".join(lines))


def resolve_db_target(cli_value: str | None, env: Mapping[str, str]) -> str:
    """``--db`` wins over ``MFM_DB``, which wins over ./experiments.db."""
    return cli_value or env.get("MFM_DB") or DEFAULT_DB


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
        except exc.ArgumentError as e:
            raise StoreError(f"--db: {target!r} is not a valid database URL ({e})") from None
        path = _sqlite_file(url)
        return url, path, str(path) if path is not None else target
    if target == ":memory:":
        return URL.create("sqlite", database=":memory:"), None, target
    path = Path(os.path.abspath(os.path.expanduser(target)))
    return URL.create("sqlite", database=str(path)), path, target


def _check_file(path: Path, shown: str) -> None:
    """Refuse, before anything is created or written, what SQLite would choke on or damage."""
    if path.is_dir():
        raise StoreError(f"--db: '{shown}' is a directory, not a SQLite database")
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise StoreError(f"--db: cannot read '{shown}': {e.strerror}") from None
        if head and head != SQLITE_HEADER:
            raise StoreError(f"--db: '{shown}' is not a SQLite database")
    elif not path.parent.is_dir():
        raise StoreError(f"--db: directory '{path.parent}' does not exist (for '{shown}')")


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy's recipe for pysqlite: stop the driver from issuing its own (late, DML-only)
    # BEGIN; _on_begin below issues ours.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


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

    Opening it checks the file, sets up connections and brings the schema to the current
    version. Use it as a context manager, or call ``close()``.

    >>> with Database(str(tmp_path / "experiments.db")) as db:   # doctest: +SKIP
    ...     with db.session_scope() as session:
    ...         ...
    """

    def __init__(self, target: str):
        self.target = target
        url, self.path, self.display = _parse_target(target)
        if self.path is not None:
            _check_file(self.path, self.display)
        self.is_sqlite = url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except (exc.ArgumentError, ImportError) as e:
            raise StoreError(f"--db: cannot open {self.display!r}: {e}") from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _on_sqlite_connect)
            event.listen(self.engine, "begin", _on_begin)
        self._read_engine = self.engine.execution_options(**{_READ_ONLY_OPTION: True})
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(bind=self._read_engine, expire_on_commit=False)
        self._pid = os.getpid()
        try:
            self.ensure_schema()
        except BaseException:
            self.engine.dispose()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

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

    def _error(self, e: BaseException) -> StoreError:
        orig = getattr(e, "orig", None) or e
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        return StoreError(f"database error in {self.display}: {first}")

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
        except exc.DBAPIError as e:
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
        with self._read_engine.connect() as conn:
            return schema.read_version(conn)

    def ensure_schema(self) -> None:
        """Create the schema in a new database, or migrate an older one; refuse a newer one."""
        self._after_fork()
        try:
            if self.is_sqlite and self.path is not None:
                self._ensure_wal()
            version = self.schema_version()
            if version == schema.SCHEMA_VERSION:
                return
            self._check_not_newer(version)
            with self.engine.begin() as conn:  # BEGIN IMMEDIATE: one process creates/migrates
                version = schema.read_version(conn)
                self._check_not_newer(version)
                if version is None:
                    if schema.user_tables(conn):
                        raise StoreError(f"--db: '{self.display}' holds tables that are not "
                                         "mfm records")
                    schema.create_fresh(conn)
                elif version < schema.SCHEMA_VERSION:
                    schema.migrate(conn, version)
        except exc.DBAPIError as e:
            raise self._error(e) from e

    def _check_not_newer(self, version: int | None) -> None:
        if version is not None and version > schema.SCHEMA_VERSION:
            raise StoreError(f"database schema version {version} is newer than this mfm "
                             f"({schema.SCHEMA_VERSION}); upgrade mfm")

    def _ensure_wal(self) -> None:
        """WAL lets readers (the TUI) read while a run writes; it persists in the file."""
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("PRAGMA journal_mode")
                mode = str(cursor.fetchone()[0]).lower()
                if mode != "wal":
                    cursor.execute("PRAGMA journal_mode=WAL")
            finally:
                cursor.close()
        finally:
            raw.close()
