"""Infrastructure settings for leadflow, read from `LEADFLOW_*` environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where leadflow keeps its data and how it talks to the outside world."""

    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", env_file=".env", extra="ignore")

    database_url: SecretStr = Field(
        default=SecretStr("sqlite:///leadflow.db"),
        description="SQLAlchemy URL of the CRM database: a SQLite file (default) or postgresql://...",
    )
    chunk_size: int = Field(default=50_000, ge=100, le=1_000_000, description="Rows read per intake chunk.")
    future_tolerance_minutes: int = Field(
        default=10, ge=0, description="Clock skew allowed before a submitted_at counts as in the future."
    )

    def database_url_plain(self) -> str:
        """The database URL as a string, for the engine factory only (never log it)."""
        return self.database_url.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
