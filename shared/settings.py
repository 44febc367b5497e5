"""Settings every service reads from its environment; one object, built at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEALREG_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "DEALREG_DATABASE_URL"),
        description="PostgreSQL URL; unset: an embedded PostgreSQL in the data directory.",
    )
    data_dir: Path = Field(
        default=Path(".dealreg"),
        description="Where the embedded PostgreSQL keeps its data and the development JWT secret.",
    )
    db_schema: str = Field(
        default="public", description="PostgreSQL schema that holds this service's tables."
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 key for bearer tokens (development and CRM tokens)."
    )
    jwt_public_key: str | None = Field(
        default=None, description="PEM public key (RS256/ES256) of the identity provider."
    )
    jwks_url: str | None = Field(
        default=None, description="JWKS URL of the identity provider; keys are cached."
    )
    jwt_audience: str = Field(default="dealreg", description="Required `aud` claim.")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim, when set.")
    clock_interval_seconds: float = Field(
        default=60.0,
        description="How often the clock worker advances to the wall clock; 0 turns it off.",
    )
    log_level: str = Field(default="INFO", description="Python log level.")
    log_json: bool = Field(default=True, description="Write logs as JSON lines.")

    def dev_secret_path(self) -> Path:
        return self.data_dir / "jwt-secret"

    def resolved_jwt_secret(self) -> str | None:
        """The configured secret, else the development one `dealreg run` keeps in the data dir."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.dev_secret_path()
        if path.exists():
            return path.read_text().strip()
        return None
