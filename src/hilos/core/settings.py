"""Settings read from the environment (prefix ``HILOS_``), with embedded defaults.

The defaults run everything in one process on a SQLite file; production sets
``HILOS_DATABASE_URL`` to PostgreSQL (asyncpg) and ``HILOS_BUS_URL`` to NATS.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HILOS_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///hilos.db"
    bus_url: str = "memory://"
    # The inbound SMTP server that `hilos serve` runs (mail to email channels' addresses).
    # Loopback by default: expose it (0.0.0.0) or relay to it from the MX deliberately.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    base_url: str = "http://127.0.0.1:8000"
    log_level: str = "info"
    log_json: bool = False
    # Seconds an API key stays cached in one process after it was checked; a revocation made
    # through this process takes effect at once, one made elsewhere within this many seconds.
    api_key_cache_seconds: float = 5.0
    worker_interval_seconds: float = 1.0
    # How long a worker's claim on a reply it is sending lasts. A worker that dies holding it
    # leaves the reply "delivery unknown" once it lapses (never sent twice; see
    # hilos.channels.delivery), so this is how long such a reply stays "sending".
    delivery_claim_seconds: float = 120.0
    # Connections each process keeps open to PostgreSQL (SQLite always uses one).
    database_pool_size: int = 20
    # Where `hilos worker` serves its Prometheus metrics (`/metrics`); no port, no listener.
    # Loopback by default, like SMTP: open it (0.0.0.0) to a Prometheus on another machine.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    # Rate limits (hilos.core.ratelimit), per process; 0 turns one off. Far above what one
    # busy key or channel sends: they stop a runaway client, not a busy business.
    rate_limit_api_per_minute: int = Field(default=300_000, ge=0)
    rate_limit_console_per_minute: int = Field(default=6_000, ge=0)
    rate_limit_webhook_per_second: int = Field(default=5_000, ge=0)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
