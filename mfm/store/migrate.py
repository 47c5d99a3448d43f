"""Schema migrations: Alembic, one history for SQLite and PostgreSQL.

The revisions live in ``mfm/store/migrations/versions`` and run programmatically (no
alembic.ini: the script location is the package folder, so an installed mfm migrates too).
This module works on a ``Connection`` and knows nothing of :class:`~mfm.store.db.Database`,
which calls it when it opens (under SQLite's write lock, or a PostgreSQL advisory lock, so
concurrent openers do not race); :mod:`mfm.store.admin` holds what the ``mfm db`` commands
do with a ``Database`` (status, upgrade).

When a database is changed:

- an empty one gets the schema when it is opened, on every backend;
- an older SQLite file (one user's) is upgraded when it is opened;
- an older database on a server (PostgreSQL: shared by several hosts) is upgraded only when
  asked (``mfm db upgrade``): opening it is refused with :class:`~mfm.store.errors.OlderSchema`,
  so that a host running a newer mfm does not lock out every host still running the older one
  (MLflow's ``mlflow db upgrade`` rule);
- a newer one (either backend) is refused with :class:`~mfm.store.errors.NewerSchema`.

Where a database can stand:

- empty: the current schema is created from the models and stamped with the head (the
  Alembic cookbook's "create_all, then stamp"; a test checks that it equals what the
  revisions build from nothing, on both backends);
- a SQLite file from before Alembic (``schema_info`` version 1..4, no ``alembic_version``):
  the hand-written steps of :mod:`mfm.store.schema` bring it to version 4, it is stamped with
  the baseline revision (which is version 4), and the later revisions run;
- at a known revision: the later revisions run;
- at a revision this mfm does not know (written by a newer mfm): refused, unchanged.

Opening an up-to-date database reads two one-row tables and imports no Alembic.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    text,
)

from mfm import __version__
from mfm.store import schema
from mfm.store.errors import NewerSchema, OlderSchema, StoreError
from mfm.store.models import Base

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["HEAD_REVISION", "BASELINE_REVISION", "MIGRATIONS_DIR", "INTRODUCED_IN",
           "SchemaState", "SchemaStatus", "head_revision", "known_revisions", "introduced_in",
           "read_state", "needs_upgrade", "upgrades_on_open", "check_state", "older_schema",
           "schema_status", "bring_to_head", "lock", "new_revision"]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# The revision that is the hand-written version 4 (what pre-Alembic files are stamped with).
BASELINE_REVISION = "0001"
# The newest revision; a test checks it against the scripts. Kept here so that opening an
# up-to-date database needs no Alembic import and no scan of the scripts.
HEAD_REVISION = "0004"
# The mfm release that introduced each revision: the one place to add a line with a new
# revision (a test checks that every revision has one). The messages name them, so that a
# host knows which mfm it needs.
INTRODUCED_IN: dict[str, str] = {
    "0001": "0.1.0",
    "0002": "0.1.0",
    "0003": "0.1.0",
    "0004": "0.1.0",
}
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key: "mfm" schema changes (any constant; only mfm takes it).
PG_LOCK_KEY = 0x6D666D_5343


@dataclass(frozen=True)
class SchemaState:
    """What a database holds, as read (nothing written)."""

    tables: tuple[str, ...]
    legacy_version: int | None   # schema_info.version (None: no schema_info)
    revision: str | None         # alembic_version (None: no such table or no row)

    @property
    def empty(self) -> bool:
        return not self.tables

    @property
    def is_mfm(self) -> bool:
        return self.legacy_version is not None or self.revision is not None


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands, for ``mfm db current``."""

    revision: str | None          # its Alembic revision (None: empty, or pre-Alembic)
    head: str                     # the newest revision this mfm knows
    legacy_version: int | None    # schema_info.version (1..4 before Alembic, 5 since)
    state: str                    # empty | legacy | behind | current | newer | foreign

    @property
    def message(self) -> str:
        return {
            "empty": f"no mfm schema yet (upgrade creates it at revision {self.head})",
            "legacy": (f"schema version {self.legacy_version} from before Alembic "
                       f"(upgrade brings it to revision {self.head})"),
            "behind": f"revision {self.revision}, behind the head {self.head} (run upgrade)",
            "current": f"revision {self.revision} (head)",
            "newer": (f"revision {self.revision}, unknown to this mfm (head {self.head}): "
                      "written by a newer mfm; upgrade mfm"),
            "foreign": "holds tables that are not mfm records",
        }[self.state]


# -- reading ----------------------------------------------------------------------------------

def _read_revision(conn: Connection, tables: tuple[str, ...]) -> str | None:
    if VERSION_TABLE not in tables:
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(rows) > 1:
        raise schema.SchemaVersionError(f"its {VERSION_TABLE} table holds {len(rows)} "
                                        "revisions (branches are not used by mfm)")
    return str(rows[0]) if rows else None


def read_state(conn: Connection) -> SchemaState:
    """Read what the database holds. Raises ``schema.SchemaVersionError`` for a
    ``schema_info`` that holds no usable version."""
    tables = tuple(schema.user_tables(conn))
    legacy = schema.read_version(conn) if "schema_info" in tables else None
    return SchemaState(tables, legacy, _read_revision(conn, tables))


def needs_upgrade(state: SchemaState) -> bool:
    return state.revision != HEAD_REVISION


def upgrades_on_open(state: SchemaState, *, is_sqlite: bool) -> bool:
    """May opening the database bring it to the head? An empty one gets its schema on every
    backend; an older one only as a SQLite file (one user's records): a server's database is
    shared by hosts that may still run the older mfm, so it waits for ``mfm db upgrade``."""
    return state.empty or is_sqlite


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    return {s.revision for s in script.walk_revisions()}


def introduced_in(revision: str | None) -> str | None:
    """The mfm release that introduced ``revision`` (None: not one this mfm knows)."""
    return None if revision is None else INTRODUCED_IN.get(revision)


def check_state(state: SchemaState, shown: str) -> None:
    """Refuse what must not be touched: a database of a newer mfm (``NewerSchema``), or one
    holding tables that are not mfm records (``StoreError``); one line each, naming the
    database as ``shown``. ``schema.SchemaVersionError`` for a damaged ``schema_info``."""
    if state.legacy_version is not None and state.legacy_version > schema.SCHEMA_VERSION:
        found = f"schema version {state.legacy_version}"
        raise NewerSchema(
            f"'{shown}' has {found}, newer than this mfm ({__version__}) knows "
            f"({schema.SCHEMA_VERSION}): a newer mfm wrote it; upgrade mfm on this host",
            found=found, needed=HEAD_REVISION, mfm_version=__version__)
    if state.revision is not None and state.revision != HEAD_REVISION \
            and state.revision not in known_revisions():
        raise NewerSchema(
            f"'{shown}' is at schema revision {state.revision!r}, which this mfm "
            f"({__version__}) does not know (its newest is {HEAD_REVISION!r}): a newer mfm "
            "upgraded it; upgrade mfm on this host",
            found=state.revision, needed=HEAD_REVISION, mfm_version=__version__)
    if not state.empty and not state.is_mfm:
        raise StoreError(f"'{shown}' holds tables that are not mfm records", field="db")
    if state.revision is None and state.legacy_version == schema.SCHEMA_VERSION:
        raise schema.SchemaVersionError(f"its schema version is {schema.SCHEMA_VERSION} but "
                                        f"it has no {VERSION_TABLE} revision")


def _found(state: SchemaState) -> str:
    """How to name where a database stands: its revision, or its pre-Alembic version."""
    if state.revision is not None:
        return f"schema revision {state.revision}"
    return f"schema version {state.legacy_version} (from before Alembic)"


def older_schema(state: SchemaState, shown: str) -> OlderSchema:
    """The refusal to open a shared database behind this mfm: one line saying where it
    stands, what this mfm needs, and to run ``mfm db upgrade`` once every host is ready.
    ``shown``: the database without its password."""
    found_mfm, needed_mfm = introduced_in(state.revision), introduced_in(HEAD_REVISION)
    made_by = f" (mfm {found_mfm})" if found_mfm is not None else ""
    ready = f"mfm {needed_mfm} or newer" if needed_mfm is not None else "this mfm"
    return OlderSchema(
        f"{shown}: the records are at {_found(state)}{made_by} and this mfm ({__version__}) "
        f"needs revision {HEAD_REVISION}; a shared database is upgraded only when asked: "
        f"once every host that uses it runs {ready}, run mfm db upgrade --db "
        f"{shlex.quote(shown)}",
        found=state.revision or _found(state), needed=HEAD_REVISION, mfm_version=__version__,
        found_mfm=found_mfm, needed_mfm=needed_mfm)


def schema_status(state: SchemaState) -> SchemaStatus:
    """Where a database in ``state`` stands (what ``mfm db current`` shows)."""
    if state.empty:
        kind = "empty"
    elif not state.is_mfm:
        kind = "foreign"
    elif state.revision is None:
        kind = "legacy"
    elif state.revision == HEAD_REVISION:
        kind = "current"
    elif state.revision in known_revisions():
        kind = "behind"
    else:
        kind = "newer"
    return SchemaStatus(state.revision, HEAD_REVISION, state.legacy_version, kind)


# -- changing -----------------------------------------------------------------------------

def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _version_table() -> Table:
    """Alembic's own ``alembic_version`` table, as its MigrationContext defines it (a test
    checks that both are equal): stamping through it spares opening a new database the
    import of Alembic and the scan of its scripts."""
    return Table(VERSION_TABLE, MetaData(),
                 Column("version_num", String(32), nullable=False),
                 PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))


def _stamp(conn: Connection, revision: str) -> None:
    """Record ``revision`` as the database's (no revision had been recorded)."""
    table = _version_table()
    table.create(conn, checkfirst=True)
    conn.execute(table.delete())
    conn.execute(table.insert().values(version_num=revision))


def _alembic_upgrade(conn: Connection, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_config(conn), revision)


def bring_to_head(conn: Connection, state: SchemaState) -> None:
    """Create or migrate the schema to the head revision, in the caller's transaction (which
    holds SQLite's write lock or the PostgreSQL advisory lock); ``state`` was read in it and
    passed :func:`check_state`."""
    if state.empty:
        Base.metadata.create_all(conn)
        schema.write_version(conn, schema.SCHEMA_VERSION)
        _stamp(conn, HEAD_REVISION)
        return
    current = state.revision
    if current is None:  # pre-Alembic: the hand-written steps to 4, then the baseline
        assert state.legacy_version is not None
        if state.legacy_version < schema.LEGACY_VERSION:
            schema.migrate(conn, state.legacy_version)
        schema.write_version(conn, schema.SCHEMA_VERSION)
        _stamp(conn, BASELINE_REVISION)
        current = BASELINE_REVISION
    if current != HEAD_REVISION:
        _alembic_upgrade(conn)


def lock(conn: Connection) -> None:
    """Serialise schema changes across processes and hosts (PostgreSQL; SQLite's BEGIN
    IMMEDIATE already does). Released when the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})


# -- for developers ---------------------------------------------------------------------------

def head_revision() -> str:
    """The newest revision this mfm knows."""
    return HEAD_REVISION


def new_revision(message: str) -> Path:
    """Write a new (empty) revision script after the head, for a developer to fill in."""
    from alembic import command

    script = command.revision(_config(), message=message)
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
