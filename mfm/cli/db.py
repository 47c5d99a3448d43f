"""``mfm db``: where the records' schema stands, and bringing it to this mfm's head."""

from __future__ import annotations

import sys

import click

from mfm.cli import jsonout
from mfm.cli.context import App, pass_app
from mfm.cli.errors import UserError, store_error
from mfm.store import StoreError, admin
from mfm.text import visible

__all__ = ["db"]


@click.group()
def db() -> None:
    """The records' schema (Alembic migrations, one history for SQLite and PostgreSQL).
    A SQLite file is brought up to date when a command opens it. A PostgreSQL database is
    shared by hosts that may run different mfm versions: a newer mfm refuses its older
    schema until `mfm db upgrade` is run, once every host runs the newer mfm.

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
        st = admin.status(database)
    except StoreError as e:
        raise store_error(e) from None
    if as_json:
        click.echo(jsonout.dumps({"revision": st.revision, "head": st.head,
                                  "legacy_version": st.legacy_version, "state": st.state,
                                  "message": st.message}))
    else:
        click.echo(f"{visible(database.target)}: {st.message}")
    if st.state in ("newer", "foreign"):
        sys.exit(1)


@db.command()
@pass_app
def upgrade(app: App) -> None:
    """Bring the database's schema to this mfm's head revision (every record kept), on
    SQLite and PostgreSQL, and say from which revision to which. On a shared database, run
    it once every host runs this mfm (or a newer one). A database written by a newer mfm is
    refused.

    \b
    Example:
      mfm db upgrade
    """
    database = app.open_db(upgrade=False)
    try:
        before = admin.status(database)
        if before.state in ("newer", "foreign"):
            raise UserError(f"--db: {visible(database.target)}: {before.message}")
        done = admin.upgrade(database)
    except StoreError as e:
        raise store_error(e) from None
    click.echo(f"{visible(database.target)}: {done.message}")
