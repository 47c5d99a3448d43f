"""A run's parent: the run whose weights it starts from (``train.init_from``).

- ``runs.parent_id``: the parent run's id (None for a run trained from scratch), set when the
  run is recorded or queued; indexed, so that a run's children and the queue's "waits for its
  parent" rule are one index lookup.

No foreign key: SQLite adds one only by copying the ``runs`` table, and with the records'
``PRAGMA foreign_keys=ON`` (which cannot be turned off inside the transaction the upgrade runs
in) dropping the old table would cascade-delete every run's metrics. A deleted parent leaves
its children's ``parent_id`` pointing at nothing: ``mfm show`` says so, and a queued child is
refused when it starts (its checkpoint cannot be resolved).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_id", BigInt, nullable=True))
    op.create_index("ix_runs_parent_id", "runs", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_id")
