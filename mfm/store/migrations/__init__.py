"""The Alembic environment of the records (one history for SQLite and PostgreSQL).

Run through :mod:`mfm.store.migrate` (no alembic.ini: the script location is this folder, so it
works from an installed package). A new revision::

    python -c "from mfm.store import migrate; migrate.new_revision('add runs.priority')"

then write its upgrade() by hand (op.add_column ...; SQLite needs ``op.batch_alter_table`` for
anything beyond adding a column) and update ``mfm/store/models.py`` to match: a test checks that
the schema the models build equals the migrated one on both backends. Then set
``migrate.HEAD_REVISION`` to it and add it to ``migrate.INTRODUCED_IN`` with the mfm release
that brings it (tests check both). Shared PostgreSQL databases are upgraded by ``mfm db
upgrade`` only, once every host runs that release; SQLite files upgrade when opened.
"""
