"""Alembic revisions, oldest first: 0001 is the baseline (the schema of mfm's hand-written
version 4)."""
