"""Named things a run is made from: dataset specs (one per name, replaced in place) and
configs (versioned: saving different content under a name makes its next version)."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, func, select

from mfm.store.convert import config_record, dumps, fits, spec_record
from mfm.store.db import Database
from mfm.store.errors import StoreError
from mfm.store.models import Config, DatasetSpec
from mfm.store.records import ConfigRecord, DatasetSpecRecord
from mfm.store.repo.common import check_record_name

__all__ = ["save_dataset_spec", "get_dataset_spec", "list_dataset_specs",
           "delete_dataset_spec", "save_config", "get_config", "list_configs"]


# -- dataset specs --------------------------------------------------------------------------

def save_dataset_spec(db: Database, name: str, spec: dict[str, Any]) -> int:
    """Save a named dataset spec, replacing the spec of an existing name (its id is kept)."""
    if not name:
        raise ValueError("a dataset spec needs a name")
    check_record_name(name)
    with db.session_scope() as session:
        row = session.scalars(select(DatasetSpec).where(DatasetSpec.name == name)).first()
        if row is None:
            row = DatasetSpec(name=name, spec_json=dumps(spec), created_at=time.time())
            session.add(row)
        else:
            row.spec_json = dumps(spec)
        session.flush()
        return row.id


def get_dataset_spec(db: Database, name: str) -> DatasetSpecRecord | None:
    with db.session_scope(read_only=True) as session:
        row = session.scalars(select(DatasetSpec).where(DatasetSpec.name == name)).first()
        return None if row is None else spec_record(row)


def list_dataset_specs(db: Database) -> list[DatasetSpecRecord]:
    """All dataset specs, by name."""
    with db.session_scope(read_only=True) as session:
        return [spec_record(r)
                for r in session.scalars(select(DatasetSpec).order_by(DatasetSpec.name))]


def delete_dataset_spec(db: Database, name: str) -> None:
    """Delete a dataset spec; runs that used it keep their frozen config
    (their ``dataset_spec_id`` becomes NULL)."""
    with db.session_scope() as session:
        result = session.execute(delete(DatasetSpec).where(DatasetSpec.name == name)
                                 .execution_options(synchronize_session=False))
        if not result.rowcount:  # type: ignore[attr-defined]
            raise StoreError(f"no dataset spec named {name!r}")


# -- named configs --------------------------------------------------------------------------

def save_config(db: Database, name: str, config: dict[str, Any]) -> ConfigRecord:
    """Save a named config. Content equal to the name's latest version returns that version;
    anything else becomes version latest + 1 (version 1 for a new name)."""
    if not name:
        raise ValueError("a config needs a name")
    check_record_name(name)
    text = dumps(config)
    content = json.loads(text)
    with db.session_scope() as session:
        latest = session.scalars(select(Config).where(Config.name == name)
                                 .order_by(Config.version.desc()).limit(1)).first()
        if latest is not None and json.loads(latest.config_json) == content:
            return config_record(latest)
        row = Config(name=name, version=1 if latest is None else latest.version + 1,
                     config_json=text, created_at=time.time())
        session.add(row)
        session.flush()
        return config_record(row)


def get_config(db: Database, name: str, version: int | None = None) -> ConfigRecord | None:
    """A named config at ``version`` (None: the latest)."""
    if not fits(version):
        return None
    query = select(Config).where(Config.name == name)
    if version is None:
        query = query.order_by(Config.version.desc()).limit(1)
    else:
        query = query.where(Config.version == version)
    with db.session_scope(read_only=True) as session:
        row = session.scalars(query).first()
        return None if row is None else config_record(row)


def list_configs(db: Database) -> list[ConfigRecord]:
    """The latest version of each named config, by name."""
    newest = (select(Config.name, func.max(Config.version).label("version"))
              .group_by(Config.name).subquery())
    query = (select(Config)
             .join(newest, (Config.name == newest.c.name) & (Config.version == newest.c.version))
             .order_by(Config.name))
    with db.session_scope(read_only=True) as session:
        return [config_record(r) for r in session.scalars(query)]
