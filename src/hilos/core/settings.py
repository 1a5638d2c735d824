"""Settings read from the environment (prefix ``HILOS_``), with embedded defaults.

The defaults run everything in one process on a SQLite file; production sets
``HILOS_DATABASE_URL`` to PostgreSQL (asyncpg) and ``HILOS_BUS_URL`` to NATS.
"""

from __future__ import annotations

from functools import lru_cache

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
    # Connections each process keeps open to PostgreSQL (SQLite always uses one).
    database_pool_size: int = 20

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
