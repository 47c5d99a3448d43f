"""The scheduler's job that holds a run (``mfm worker --executor slurm``).

- ``runs.job_id``: Slurm's job id (None for a run of a local process);
- ``runs.job_state``: Slurm's last word on that job while the run could not say more itself
  (``PENDING (Priority)``, ``FAILED (NonZeroExitCode)``), shown by ``mfm runs``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("job_id", sa.String(), nullable=True))
        batch.add_column(sa.Column("job_state", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("job_state")
        batch.drop_column("job_id")
