"""Configuration from the environment (and a `.env` file), as INTERFACE.md names it.

Read by `bootstrap` and `entrypoints/cli` only; everything else receives plain values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ADYEN_REPORT_HOSTS = "ca-live.adyen.com,ca-test.adyen.com"


class Settings(BaseSettings):
    """Every knob the bridge reads. Unprefixed THRED_* names are Thred's own credentials."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    database_url: str = Field("sqlite:///thred-bridge.db", alias="BRIDGE_DATABASE_URL")
    thred_api_url: str | None = Field(None, alias="THRED_API_URL")
    thred_partner_id: str | None = Field(None, alias="THRED_PARTNER_ID")
    thred_api_key: SecretStr | None = Field(None, alias="THRED_API_KEY")
    secret_key: SecretStr | None = Field(None, alias="BRIDGE_SECRET_KEY")
    previous_secret_keys: SecretStr | None = Field(None, alias="BRIDGE_PREVIOUS_SECRET_KEYS")
    public_url: str = Field("http://127.0.0.1:8000", alias="BRIDGE_PUBLIC_URL")
    admin_token: SecretStr | None = Field(None, alias="BRIDGE_ADMIN_TOKEN")
    stripe_api_base: str = Field("https://api.stripe.com", alias="BRIDGE_STRIPE_API_BASE")
    mollie_api_base: str = Field("https://api.mollie.com", alias="BRIDGE_MOLLIE_API_BASE")
    mollie_settlement_poll_seconds: float = Field(900.0, ge=0, alias="BRIDGE_MOLLIE_SETTLEMENT_POLL_SECONDS")
    adyen_report_hosts: str = Field(ADYEN_REPORT_HOSTS, alias="BRIDGE_ADYEN_REPORT_HOSTS")
    workers: int = Field(1, ge=0, le=64, alias="BRIDGE_WORKERS")
    env: Literal["development", "production"] = Field("development", alias="BRIDGE_ENV")
    worker_concurrency: int = Field(16, ge=1, le=512, alias="BRIDGE_WORKER_CONCURRENCY")
    # Records a worker sends at once, at most; the calls in flight adapt below it to Thred's 429s (thred/limit.py).
    dispatch_concurrency: int = Field(64, ge=1, le=1024, alias="BRIDGE_DISPATCH_CONCURRENCY")
    max_attempts: int = Field(12, ge=1, le=100, alias="BRIDGE_MAX_ATTEMPTS")
    max_body_bytes: int = Field(1024 * 1024, ge=1024, alias="BRIDGE_MAX_BODY_BYTES")
    body_timeout_seconds: float = Field(10.0, gt=0, alias="BRIDGE_BODY_TIMEOUT_SECONDS")
    log_level: str = Field("info", alias="BRIDGE_LOG_LEVEL")
    gil_switch_ms: float = Field(1.0, gt=0, le=100, alias="BRIDGE_GIL_SWITCH_MS")
    lease_seconds: float = Field(60.0, ge=1.0, alias="BRIDGE_LEASE_SECONDS")
    thred_timeout: float = Field(15.0, gt=0, alias="BRIDGE_THRED_TIMEOUT")
    heartbeat_seconds: float = Field(2.0, gt=0, alias="BRIDGE_HEARTBEAT_SECONDS")
    takeover_seconds: float = Field(10.0, gt=0, alias="BRIDGE_TAKEOVER_SECONDS")
    shutdown_seconds: float = Field(20.0, ge=0, alias="BRIDGE_SHUTDOWN_SECONDS")
    # Database connections per process: the pool holds this many, and opens up to max_overflow more under load
    # (Postgres; plus one for the process's own presence session). Every process counts against the server's
    # max_connections (100 by default): size them so that processes × (pool + overflow + 1) fits.
    db_pool_size: int = Field(10, ge=1, le=500, alias="BRIDGE_DB_POOL_SIZE")
    db_max_overflow: int = Field(5, ge=0, le=500, alias="BRIDGE_DB_MAX_OVERFLOW")
    # `thred-bridge worker` serves /metrics and /healthz here when set (0: any free port, logged); `serve` has
    # them on its own port already.
    metrics_port: int | None = Field(None, ge=0, le=65535, alias="BRIDGE_METRICS_PORT")
    metrics_host: str = Field("0.0.0.0", alias="BRIDGE_METRICS_HOST")  # noqa: S104 - scraped from other hosts

    @model_validator(mode="after")
    def _heartbeat_fits_takeover(self) -> Settings:
        if self.heartbeat_seconds * 4 > self.takeover_seconds:
            raise ValueError(
                "BRIDGE_HEARTBEAT_SECONDS must be at most a quarter of BRIDGE_TAKEOVER_SECONDS "
                "(a dead process is found by a heartbeat that stops)"
            )
        return self

    @field_validator("database_url", mode="after")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        # `postgres://` is what Heroku-style platforms hand out (`fly postgres attach`); it means postgresql://
        return "postgresql://" + value.removeprefix("postgres://") if value.startswith("postgres://") else value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _blank_port_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("thred_api_url", "thred_partner_id", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def embedded_sandbox(self) -> bool:
        """True when no Thred URL is configured: the bridge starts the sandbox beside itself."""
        return self.thred_api_url is None


def load() -> Settings:
    return Settings()
