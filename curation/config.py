"""Settings: embedded defaults, overridable by a TOML file and CURATION_* environment variables.

Precedence (highest first): constructor arguments, environment variables, the config file
(``CURATION_CONFIG`` or ``<home>/curation.toml``), the embedded defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from curation.errors import CurationError

CONFIG_FILE_NAME = "curation.toml"


def _config_file() -> Path:
    explicit = os.environ.get("CURATION_CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise CurationError(f"config file {path} does not exist", "fix CURATION_CONFIG or create the file")
        return path
    return Path(os.environ.get("CURATION_HOME", ".")) / CONFIG_FILE_NAME


class Settings(BaseSettings):
    """Where the project's state lives. Relative paths are resolved against ``home``."""

    model_config = SettingsConfigDict(env_prefix="CURATION_", extra="forbid")

    home: Path = Path(".")
    catalog_url: str | None = None  # default: SQLite file <home>/catalog.db
    tracking_uri: str | None = None  # default: sqlite:///<home>/mlflow/mlflow.db
    data_dir: Path = Path("data")
    dvc: bool = True  # track every data set version with DVC
    seed: int = 0

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_config_file())
        return (init_settings, env_settings, toml)

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("seed")
    @classmethod
    def _non_negative_seed(cls, value: int) -> int:
        if value < 0:
            raise ValueError("seed must be >= 0")
        return value

    @property
    def data_path(self) -> Path:
        return self.data_dir if self.data_dir.is_absolute() else self.home / self.data_dir

    @property
    def catalog(self) -> str:
        return self.catalog_url or f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def tracking(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"


def load_settings(**overrides) -> Settings:
    """Settings from the environment and config file; a bad value becomes a one-line CurationError."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise CurationError(
            f"bad setting {where!r}: {err['msg']}",
            f"fix CURATION_{where.upper()} or the config file",
        ) from None
