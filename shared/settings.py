"""Settings every service reads from its environment; one object, built at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.webhooks.secrets import key_from_passphrase


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEALREG_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "DEALREG_DATABASE_URL"),
        description="PostgreSQL URL; unset: an embedded PostgreSQL in the data directory.",
    )
    db_pool_min_connections: int = Field(
        default=4,
        ge=1,
        description="Connections a service process keeps open in its pool for writes, "
        "projections and the clock.",
    )
    db_pool_max_connections: int = Field(
        default=4,
        ge=1,
        description="The most connections that pool opens under load (above the minimum, "
        "one closes per minute unused).",
    )
    db_read_pool_max_connections: int = Field(
        default=4,
        ge=1,
        description="The most connections the API's read pool opens (one is kept open).",
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
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, /metrics answers only this bearer token; unset, it is open.",
    )
    jwt_audience: str = Field(default="dealreg", description="Required `aud` claim.")
    jwt_issuer: str | None = Field(default=None, description="Required `iss` claim, when set.")
    clock_interval_seconds: float = Field(
        default=60.0,
        description="How often the clock worker advances to the wall clock; 0 turns it off.",
    )
    audit_checkpoint_every: int = Field(
        default=1000,
        ge=1,
        description="Events between two published checkpoints of the log's hash chain.",
    )
    webhook_key: SecretStr | None = Field(
        default=None,
        description="Fernet key that seals webhook endpoint secrets in the log (the same in "
        "every service); unset: derived from the JWT secret (development).",
    )
    webhook_allow_private_urls: bool = Field(
        default=False,
        description="Allow http and endpoint addresses other than global unicast ones.",
    )
    webhook_rotation_overlap_hours: float = Field(
        default=24.0, ge=0, description="How long a rotated-out secret keeps signing too."
    )
    webhook_timeout_seconds: float = Field(default=15.0, gt=0, description="Per delivery.")
    webhook_disable_after_days: float = Field(
        default=5.0, gt=0, description="An endpoint failing this long is suspended."
    )
    webhook_retry_schedule_seconds: list[float] = Field(
        default=[0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400],
        min_length=1,
        description="Delay before each attempt of a message (about three days in all); "
        "each is jittered by up to 10%.",
    )
    webhook_poll_seconds: float = Field(
        default=0.25, ge=0, description="How often the dispatcher looks for work; 0 stops it."
    )
    webhook_concurrency: int = Field(default=16, ge=1, description="Deliveries in flight.")
    idempotency_lease_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long an Idempotency-Key stays claimed by a request whose process "
        "stopped (renewed while the request runs): a retry after a crash waits this long.",
    )
    idempotency_retention_hours: float = Field(
        default=24.0, gt=0, description="How long a request's stored answer is replayed."
    )
    commissions_url: str = Field(
        default="http://127.0.0.1:8002",
        description="Where tiering reaches the commissions service (a what-if asks it for the "
        "statements).",
    )
    http_keep_alive_seconds: int = Field(
        default=75,
        ge=1,
        description="How long an idle client connection is kept open. Longer than the idle "
        "timeout of the clients and load balancers in front (60 s is common), so that the server "
        "never closes a connection a client is about to reuse.",
    )
    log_level: str = Field(default="INFO", description="Python log level.")
    log_json: bool = Field(default=True, description="Write logs as JSON lines.")

    def resolved_webhook_key(self) -> str | None:
        if self.webhook_key is not None:
            return self.webhook_key.get_secret_value()
        passphrase = self.resolved_jwt_secret()
        return key_from_passphrase(passphrase) if passphrase else None

    def resolved_answer_key(self) -> str | None:
        """The Fernet key that seals stored answers (derived from the webhook key)."""
        key = self.resolved_webhook_key()
        return key_from_passphrase(f"stored answers\x00{key}") if key else None

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
