"""The library: saved dataset specs and named configs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mfm_tui.services.backend import Backend, ServiceError, _check_name

if TYPE_CHECKING:
    from mfm.store.records import ConfigRecord, DatasetSpecRecord
    from mfm.store.views import ConfigUse


class LibraryServices(Backend):
    # -- dataset specs ------------------------------------------------------------------------

    def list_dataset_specs(self) -> list[DatasetSpecRecord]:
        from mfm.store import repo

        return self._call(repo.list_dataset_specs)

    def get_dataset_spec(self, name: str) -> DatasetSpecRecord | None:
        from mfm.store import repo

        return self._call(repo.get_dataset_spec, name)

    def save_dataset_spec(self, name: str, spec: dict[str, Any]) -> int:
        from mfm.config import ConfigError
        from mfm.specs import check_dataset_spec
        from mfm.store import repo

        if not name.strip():
            raise ServiceError("name: a dataset spec needs a name")
        _check_name("name", name.strip())
        try:
            check_dataset_spec(spec)
        except ConfigError as e:
            raise ServiceError(str(e)) from None
        self.check_buildable(spec)
        return self._call(repo.save_dataset_spec, name.strip(), spec)

    def check_buildable(self, spec: dict[str, Any]) -> None:
        """ServiceError when the split a spec describes cannot be built from its data (an
        imbalance factor that leaves the rarest class no image, a meta split larger than a
        class...): ``preview_counts`` says so. Data that is not on this machine (key
        ``data.root``: not downloaded, a folder elsewhere) is not a reason to refuse: runs
        may be served where it is."""
        from mfm.config import ConfigError

        try:
            self.preview_counts(spec)
        except ConfigError as e:
            if e.key != "data.root":
                raise ServiceError(str(e)) from None

    def delete_dataset_spec(self, name: str) -> str:
        from mfm.store import repo

        self._call(repo.delete_dataset_spec, name)
        return f"dataset spec {name!r} deleted (runs that used it keep their frozen config)"

    def preview_counts(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Per-class train/meta/test counts of a dataset spec, without torch. Raises
        mfm.config.ConfigError for an invalid spec or missing data."""
        from mfm.data.sources import preview_counts
        from mfm.specs import check_dataset_spec

        return preview_counts(check_dataset_spec(spec).data)

    # -- named configs ------------------------------------------------------------------------

    def list_configs(self) -> list[ConfigRecord]:
        from mfm.store import repo

        return self._call(repo.list_configs)

    def get_config(self, name: str, version: int | None = None) -> ConfigRecord | None:
        from mfm.store import repo

        return self._call(repo.get_config, name, version)

    def config_use(self, name: str) -> ConfigUse | None:
        """The latest version of a named config and the runs that use any of its versions."""
        from mfm.store import views

        return self._call(views.config_use, name)

    def save_config(self, name: str, config: dict[str, Any]) -> tuple[ConfigRecord, str]:
        """Save a named config. Changed content becomes a new version, so runs that used an
        earlier one keep pointing at what they ran with. Returns (record, what happened)."""
        from mfm.config import ConfigError
        from mfm.specs import check_named_config
        from mfm.store import repo

        name = name.strip()
        if not name:
            raise ServiceError("name: a config needs a name")
        if "@" in name:
            raise ServiceError("name: '@' is reserved for versions (NAME@VERSION)")
        _check_name("name", name)
        try:
            check_named_config(config)
        except ConfigError as e:
            raise ServiceError(str(e)) from None
        before = self.get_config(name)
        rec = self._call(repo.save_config, name, config)
        if before is None:
            return rec, f"config {name!r} saved (version 1)"
        if rec.version == before.version:
            return rec, f"config {name!r} unchanged (version {rec.version})"
        use = self.config_use(name)
        used = f"; runs {', '.join(map(str, use.run_ids))} keep their earlier versions" \
            if use and use.run_ids else ""
        return rec, f"config {name!r} saved as version {rec.version}{used}"

    def delete_config(self, name: str) -> str:
        """Delete every version of a named config; refused while runs reference one."""
        from mfm.store import views

        use = self._call(views.delete_config, name)
        return f"config {name!r} deleted ({use.version} version(s))"
