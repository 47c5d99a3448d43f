"""``mfm db``: where the records' schema stands, and bringing it to this mfm's head."""

from __future__ import annotations

import sys

import click

from mfm.cli import jsonout
from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError
from mfm.store import StoreError, migrate
from mfm.text import visible

__all__ = ["db"]


@click.group()
def db() -> None:
    """The records' schema (Alembic migrations, one history for SQLite and PostgreSQL).
    Every command brings the schema up to date when it opens the records; these commands look
    and upgrade explicitly (a shared PostgreSQL database: upgrade once, then every host).

    \b
    Examples:
      mfm db current
      mfm db upgrade --db postgresql+psycopg://lab@dbhost/mfm
    """


@db.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@pass_app
def current(app: App, as_json: bool) -> None:
    """Print the database's schema revision and the head this mfm knows; changes nothing.
    Exit 1 when the database is newer than this mfm or holds other tables.

    \b
    Example:
      mfm db current
    """
    database = app.open_db(upgrade=False)
    try:
        st = migrate.status(database)
    except StoreError as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(jsonout.dumps({"revision": st.revision, "head": st.head,
                                  "legacy_version": st.legacy_version, "state": st.state,
                                  "message": st.message}))
    else:
        click.echo(f"{visible(app.db_target)}: {st.message}")
    if st.state in ("newer", "foreign"):
        sys.exit(1)


@db.command()
@pass_app
def upgrade(app: App) -> None:
    """Bring the database's schema to this mfm's head revision (every record kept). A
    database written by a newer mfm is refused.

    \b
    Example:
      mfm db upgrade
    """
    database = app.open_db(upgrade=False)
    try:
        before = migrate.status(database)
        if before.state in ("newer", "foreign"):
            raise UserError(f"--db: {visible(app.db_target)}: {before.message}")
        _, after = migrate.upgrade(database)
    except StoreError as e:
        raise UserError(str(e)) from None
    if before.state == "current":
        click.echo(f"{visible(app.db_target)}: already at revision {after} (head)")
    else:
        click.echo(f"{visible(app.db_target)}: {before.message} -> revision {after} (head)")
