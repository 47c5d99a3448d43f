"""What the ``mfm db`` commands do with a :class:`~mfm.store.db.Database`: where its schema
stands, and bringing it to this mfm's head revision.

Open the database with ``Database(target, upgrade=False)`` to look at it (or upgrade it)
without the checks an ordinary open makes. :mod:`mfm.store.migrate` works on connections
only; this module joins the two (neither imports the other's caller).

- :func:`status` / :func:`current_revision`: where a database stands, without changing it;
- :func:`upgrade`: bring it to the head revision, on every backend (an ordinary open does so
  only for a SQLite file; a shared PostgreSQL database waits for this).
"""

from __future__ import annotations

from dataclasses import dataclass

from mfm.store import migrate
from mfm.store.db import Database
from mfm.store.migrate import SchemaStatus

__all__ = ["SchemaStatus", "Upgrade", "status", "current_revision", "upgrade"]


@dataclass(frozen=True)
class Upgrade:
    """What :func:`upgrade` did: where the database stood before, and after."""

    before: SchemaStatus
    after: str            # the revision it is at now (the head)

    @property
    def changed(self) -> bool:
        return self.before.state != "current"

    @property
    def message(self) -> str:
        """One line: "upgraded from revision 0002 to revision 0003 (head)" and the like."""
        b = self.before
        if b.state == "current":
            return f"already at revision {self.after} (head)"
        if b.state == "empty":
            return f"created the schema at revision {self.after} (head)"
        if b.state == "legacy":
            return (f"upgraded from schema version {b.legacy_version} (from before Alembic) "
                    f"to revision {self.after} (head)")
        return f"upgraded from revision {b.revision} to revision {self.after} (head)"

    def as_pair(self) -> tuple[str | None, str]:
        """(revision before, revision after)."""
        return self.before.revision, self.after


def status(db: Database) -> SchemaStatus:
    """Where ``db`` stands; changes nothing. A damaged, foreign or newer database raises the
    same one-line StoreError an ordinary open raises."""
    state = db.schema_state()
    db.check_state(state)
    return migrate.schema_status(state)


def current_revision(db: Database) -> str | None:
    """``db``'s Alembic revision (None: empty, or a SQLite file from before Alembic)."""
    return db.schema_state().revision


def upgrade(db: Database) -> Upgrade:
    """Bring ``db`` to the head revision, on every backend. A database of a newer mfm
    (``NewerSchema``) or a foreign one is refused with a one-line ``StoreError`` and left
    as it is."""
    before = status(db)
    db.ensure_schema(upgrade_older=True)
    return Upgrade(before, migrate.HEAD_REVISION)
