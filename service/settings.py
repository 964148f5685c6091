"""All configuration, read once from the environment (prefix PEERWAY_) or a .env file."""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-change-me-dev-only-change-me"  # noqa: S105 - the known placeholder we refuse outside dev


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PEERWAY_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = Field(
        default="", description="Base URL clients see (used in Location headers); default http://host:port"
    )
    database_url: str = "sqlite+aiosqlite:///./var/peerway.db"

    # Bearer JWTs that callers present (HS256, shared secret).
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_issuer: str = "peerway"
    jwt_audience: str = "peerway"

    # The hospital EHR that contacts are written back to.
    ehr_base_url: str = "http://127.0.0.1:8103/fhir"
    ehr_bearer_token: SecretStr | None = None
    ehr_write_mode: Literal["put", "conditional-create"] = "put"
    ehr_timeout_seconds: float = 10.0

    # Outbox delivery.
    run_worker: bool = True
    outbox_poll_seconds: float = 1.0
    outbox_lease_seconds: float = 60.0
    outbox_batch_size: int = 20
    outbox_max_backoff_seconds: float = 300.0

    # Intake limits.
    max_body_bytes: int = 5_000_000

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        secret = self.jwt_secret.get_secret_value()
        if self.env != "dev" and (secret == DEV_JWT_SECRET or len(secret) < 32):
            raise ValueError("PEERWAY_JWT_SECRET must be set to a random value of 32+ characters outside dev")
        return self

    @cached_property
    def base_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")
