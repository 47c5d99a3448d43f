"""Baseline: the schema of mfm's hand-written version 4 (runs and their metrics, dataset
specs, named configs, the run queue and workers, sweeps and their cells).

Written out here, never derived from the models, so it stays fixed: an empty database gets
this; a SQLite file from before Alembic is brought to version 4 by ``mfm.store.schema`` and
stamped with this revision instead.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Whole numbers: INTEGER on SQLite (the rowid alias), BIGINT elsewhere (as in models.py).
BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# schema_info.version from the Alembic era on (mfm.store.schema.SCHEMA_VERSION).
SCHEMA_INFO_VERSION = 5


def upgrade() -> None:
    schema_info = _schema_info()
    _named_things()
    _runs()
    _metrics()
    _workers()
    _sweeps()
    op.bulk_insert(schema_info, [{"id": 1, "version": SCHEMA_INFO_VERSION}])


def _schema_info() -> sa.Table:
    return op.create_table(
        "schema_info",
        sa.Column("id", BigInt, nullable=False, autoincrement=False),
        sa.Column("version", BigInt, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schema_info"),
    )


def _named_things() -> None:
    """Dataset specs and named configs."""
    op.create_table(
        "dataset_specs",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_dataset_specs"),
        sa.UniqueConstraint("name", name="uq_dataset_specs_name"),
    )
    op.create_table(
        "configs",
        sa.Column("id", BigInt, nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("version", BigInt, nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_configs"),
        sa.UniqueConstraint("name", "version", name="uq_configs_name_version"),
    )


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", BigInt, nullable=False, autoincrement=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("host", sa.String(), nullable=True),
        sa.Column("pid", BigInt, nullable=True),
        sa.Column("device", sa.String(), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("split_hash", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.Column("class_counts_json", sa.Text(), nullable=True),
        sa.Column("confusion_json", sa.Text(), nullable=True),
        sa.Column("epochs_total", BigInt, nullable=False),
        sa.Column("epoch", BigInt, nullable=True),
        sa.Column("checkpoint_dir", sa.String(), nullable=True),
        sa.Column("log_path", sa.String(), nullable=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=True),
        sa.Column("dataset_spec_id", BigInt, nullable=True),
        sa.Column("config_id", BigInt, nullable=True),
        sa.Column("queued_at", sa.Float(), nullable=True),
        sa.Column("slot", sa.String(), nullable=True),
        sa.Column("proc_start", sa.String(), nullable=True),
        sa.Column("cancel_requested_at", sa.Float(), nullable=True),
        sa.Column("resume_requested", BigInt, nullable=True),
        sa.Column("attempt", BigInt, nullable=True),
        sa.Column("code_version", sa.String(), nullable=True),
        sa.Column("want_slot", sa.String(), nullable=True),
        sa.Column("config_hash", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(["config_id"], ["configs.id"],
                                name="fk_runs_config_id_configs"),
        sa.ForeignKeyConstraint(["dataset_spec_id"], ["dataset_specs.id"],
                                name="fk_runs_dataset_spec_id_dataset_specs",
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        # a deleted run's id is never handed out again (checkpoint dirs are named after it)
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_created_at", "runs", ["created_at"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_config_hash", "runs", ["config_hash"])


def _metrics() -> None:
    """Step and epoch scalars, per-class vectors, the latest value of each key."""
    for table, keys in (("step_metrics", ("key", "step")), ("epoch_metrics", ("key", "epoch"))):
        columns: list[sa.schema.SchemaItem] = [sa.Column("run_id", BigInt, nullable=False),
                                               sa.Column("key", sa.String(), nullable=False)]
        if table == "step_metrics":
            columns += [sa.Column("step", BigInt, nullable=False),
                        sa.Column("epoch", BigInt, nullable=False)]
        else:
            columns += [sa.Column("epoch", BigInt, nullable=False)]
        op.create_table(
            table, *columns,
            sa.Column("value", sa.Float(), nullable=True),
            sa.Column("at", sa.Float(), nullable=False),
            sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{table}_run_id_runs",
                                    ondelete="CASCADE"),
            sa.PrimaryKeyConstraint("run_id", *keys, name=f"pk_{table}"),
            sqlite_with_rowid=False,
        )
    op.create_table(
        "class_metrics",
        sa.Column("run_id", BigInt, nullable=False),
        sa.Column("epoch", BigInt, nullable=False),
        sa.Column("kind", sa.String(), server_default="acc", nullable=False),
        sa.Column("values_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_class_metrics_run_id_runs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "epoch", "kind", name="pk_class_metrics"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", BigInt, nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("step", BigInt, nullable=True),
        sa.Column("epoch", BigInt, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_latest_metrics_run_id_runs",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_latest_metrics"),
        sqlite_with_rowid=False,
    )


def _workers() -> None:
    op.create_table(
        "workers",
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", BigInt, nullable=False),
        sa.Column("proc_start", sa.String(), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("slots_json", sa.Text(), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("host", name="pk_workers"),
    )


def _sweeps() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", BigInt, nullable=False, autoincrement=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("file_text", sa.Text(), nullable=False),
        sa.Column("grid_json", sa.Text(), nullable=False),
        sa.Column("code_version", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
        sa.UniqueConstraint("name", name="uq_sweeps_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sweep_cells",
        sa.Column("sweep_id", BigInt, nullable=False),
        sa.Column("config_hash", sa.String(), nullable=False),
        sa.Column("idx", BigInt, nullable=False),
        sa.Column("arm", sa.String(), nullable=False),
        sa.Column("seed", BigInt, nullable=False),
        sa.Column("run_id", BigInt, nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_sweep_cells_run_id_runs",
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["sweep_id"], ["sweeps.id"],
                                name="fk_sweep_cells_sweep_id_sweeps", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("sweep_id", "config_hash", name="pk_sweep_cells"),
    )
    op.create_index("ix_sweep_cells_run_id", "sweep_cells", ["run_id"])


def downgrade() -> None:
    for table in ("sweep_cells", "sweeps", "workers", "latest_metrics", "class_metrics",
                  "epoch_metrics", "step_metrics", "runs", "configs", "dataset_specs",
                  "schema_info"):
        op.drop_table(table)
