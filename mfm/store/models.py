"""The ORM: SQLAlchemy 2.0 typed declarative models (the current schema version).

Changing anything here needs an Alembic revision in ``mfm/store/migrations/versions`` (a
test compares the schema built from these models with the one the migrations build, on
SQLite and on PostgreSQL).

Metric values are nullable on purpose: SQLite stores a float NaN as NULL, and a diverging
loss is a value we must record, not an integrity error. The repository writes NaN as NULL on
every backend (PostgreSQL could hold NaN itself) and maps NULL back to NaN.

Whole numbers are 64-bit on every backend (``BigInt``): SQLite's INTEGER is, PostgreSQL's
``integer`` is not (ids, steps and seeds may pass 2**31). On SQLite the type stays INTEGER,
so ``INTEGER PRIMARY KEY`` still aliases the rowid.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Base", "SchemaInfo", "DatasetSpec", "Config", "Run", "StepMetric", "EpochMetric",
    "ClassMetric", "LatestMetric", "Worker", "Sweep", "SweepCell", "RunTag", "BigInt",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# INTEGER on SQLite (the rowid alias), BIGINT (bigserial for an autoincrementing key) elsewhere.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # Every model here maps one Table; SQLAlchemy types __table__ as the wider FromClause.
    __table__: ClassVar[Table]


class SchemaInfo(Base):
    """A single row holding the schema version of the hand-written era (1..4); since Alembic
    it holds ``mfm.store.schema.SCHEMA_VERSION`` (5) for good, which mfm releases from before
    Alembic refuse as newer than themselves. The revision is in ``alembic_version``."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInt)


class DatasetSpec(Base):
    __tablename__ = "dataset_specs"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    spec_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class Config(Base):
    """A named method config; saving changed content under a name adds a version."""

    __tablename__ = "configs"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(String)
    version: Mapped[int] = mapped_column(BigInt)
    config_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)


class Run(Base):
    __tablename__ = "runs"
    # AUTOINCREMENT: a deleted run's id is never handed out again (checkpoint dirs and logs
    # are named after it).
    __table_args__ = (Index("ix_runs_created_at", "created_at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String)
    status: Mapped[str] = mapped_column(String, index=True)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    host: Mapped[str | None] = mapped_column(String)
    pid: Mapped[int | None] = mapped_column(BigInt)
    device: Mapped[str | None] = mapped_column(String)
    config_json: Mapped[str] = mapped_column(Text)
    split_hash: Mapped[str | None] = mapped_column(String)
    error: Mapped[str | None] = mapped_column(Text)
    summary_json: Mapped[str | None] = mapped_column(Text)
    class_counts_json: Mapped[str | None] = mapped_column(Text)
    confusion_json: Mapped[str | None] = mapped_column(Text)
    epochs_total: Mapped[int] = mapped_column(BigInt)
    epoch: Mapped[int | None] = mapped_column(BigInt)
    checkpoint_dir: Mapped[str | None] = mapped_column(String)
    log_path: Mapped[str | None] = mapped_column(String)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    dataset_spec_id: Mapped[int | None] = mapped_column(
        BigInt, ForeignKey("dataset_specs.id", ondelete="SET NULL"))
    config_id: Mapped[int | None] = mapped_column(BigInt, ForeignKey("configs.id"))
    # v2: the run queue
    queued_at: Mapped[float | None] = mapped_column(Float)
    slot: Mapped[str | None] = mapped_column(String)
    proc_start: Mapped[str | None] = mapped_column(String)
    cancel_requested_at: Mapped[float | None] = mapped_column(Float)
    resume_requested: Mapped[int | None] = mapped_column(BigInt)
    attempt: Mapped[int | None] = mapped_column(BigInt)
    code_version: Mapped[str | None] = mapped_column(String)
    # v3: the slot a queued run asks for (None = any)
    want_slot: Mapped[str | None] = mapped_column(String)
    # v4: sha256 of the resolved config (canonical JSON): how a sweep finds a finished run
    config_hash: Mapped[str | None] = mapped_column(String, index=True)
    # revision 0002: a free-text note, and the host a queued run asks for (None = any)
    note: Mapped[str | None] = mapped_column(Text)
    want_host: Mapped[str | None] = mapped_column(String)
    # revision 0003: the scheduler's job that holds the run (Slurm's job id), and the
    # scheduler's last word on it ("PENDING (Priority)"), for what the run could not say
    job_id: Mapped[str | None] = mapped_column(String)
    job_state: Mapped[str | None] = mapped_column(String)
    # revision 0004: the run whose weights this one starts from (train.init_from); no foreign
    # key (the revision says why): a deleted parent leaves the id pointing at nothing
    parent_id: Mapped[int | None] = mapped_column(BigInt, index=True)


class StepMetric(Base):
    """One scalar per (run, key, step); clustered by its key (WITHOUT ROWID) so a series is
    one contiguous range scan."""

    __tablename__ = "step_metrics"
    __table_args__ = (PrimaryKeyConstraint("run_id", "key", "step"), {"sqlite_with_rowid": False})

    run_id: Mapped[int] = mapped_column(BigInt, ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String)
    step: Mapped[int] = mapped_column(BigInt)
    epoch: Mapped[int] = mapped_column(BigInt)
    value: Mapped[float | None] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class EpochMetric(Base):
    __tablename__ = "epoch_metrics"
    __table_args__ = (PrimaryKeyConstraint("run_id", "key", "epoch"),
                      {"sqlite_with_rowid": False})

    run_id: Mapped[int] = mapped_column(BigInt, ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String)
    epoch: Mapped[int] = mapped_column(BigInt)
    value: Mapped[float | None] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)


class ClassMetric(Base):
    """One per-class vector (JSON list of floats) per run, epoch and kind."""

    __tablename__ = "class_metrics"
    __table_args__ = (PrimaryKeyConstraint("run_id", "epoch", "kind"),
                      {"sqlite_with_rowid": False})

    run_id: Mapped[int] = mapped_column(BigInt, ForeignKey("runs.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(BigInt)
    kind: Mapped[str] = mapped_column(String, default="acc", server_default="acc")
    values_json: Mapped[str] = mapped_column(Text)


class LatestMetric(Base):
    """The last value logged for each key of a run (step or epoch metric), for the run list."""

    __tablename__ = "latest_metrics"
    __table_args__ = (PrimaryKeyConstraint("run_id", "key"), {"sqlite_with_rowid": False})

    run_id: Mapped[int] = mapped_column(BigInt, ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String)
    value: Mapped[float | None] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(BigInt)
    epoch: Mapped[int | None] = mapped_column(BigInt)


class Worker(Base):
    """v2: the supervisor serving this database on a host, and its slots (for status bars)."""

    __tablename__ = "workers"

    host: Mapped[str] = mapped_column(String, primary_key=True)
    pid: Mapped[int] = mapped_column(BigInt)
    proc_start: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    slots_json: Mapped[str] = mapped_column(Text)
    stopped_at: Mapped[float | None] = mapped_column(Float)


class Sweep(Base):
    """v4: a study as one file: its text, and the grid it expanded to."""

    __tablename__ = "sweeps"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    file_text: Mapped[str] = mapped_column(Text)
    grid_json: Mapped[str] = mapped_column(Text)
    code_version: Mapped[str | None] = mapped_column(String)


class SweepCell(Base):
    """v4: one cell of a sweep (an arm at one seed) and the run that answers it. A finished
    run with the same resolved config is reused, so one run can answer cells of several
    sweeps; deleting the run leaves the cell waiting (run_id NULL)."""

    __tablename__ = "sweep_cells"
    __table_args__ = (PrimaryKeyConstraint("sweep_id", "config_hash"),)

    sweep_id: Mapped[int] = mapped_column(BigInt, ForeignKey("sweeps.id", ondelete="CASCADE"))
    config_hash: Mapped[str] = mapped_column(String)
    idx: Mapped[int] = mapped_column(BigInt)
    arm: Mapped[str] = mapped_column(String)
    seed: Mapped[int] = mapped_column(BigInt)
    run_id: Mapped[int | None] = mapped_column(
        BigInt, ForeignKey("runs.id", ondelete="SET NULL"), index=True)


class RunTag(Base):
    """Revision 0002: one tag of a run (``mfm tag``); the runs screen filters on them."""

    __tablename__ = "run_tags"
    __table_args__ = (PrimaryKeyConstraint("run_id", "tag"),)

    run_id: Mapped[int] = mapped_column(BigInt, ForeignKey("runs.id", ondelete="CASCADE"))
    tag: Mapped[str] = mapped_column(String, index=True)
