"""Alembic's environment: runs the revisions on the connection mfm.store.migrate hands over
(inside its transaction), or on a fresh engine for ``sqlalchemy.url`` (the alembic CLI)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from mfm.store.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters most things by copying the table; batch mode does that for us.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("mfm's migrations run online only (mfm db upgrade)")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
