"""Shared fixtures: a migrated database per backend, the real app over ASGI, fresh tenants.

Every database test runs once on SQLite and, when ``HILOS_TEST_DATABASE_URL`` points at
PostgreSQL, once more there. Tests isolate themselves by creating their own tenants, which is
the isolation the product itself promises; the PostgreSQL database is wiped at the start.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.app import create_app
from hilos.core import service as core_service
from hilos.core.bus import InProcessBus
from hilos.core.db import make_engine, make_sessionmaker
from hilos.core.settings import Settings
from hilos.core.tenancy import TenantContext
from hilos.migrate import upgrade

POSTGRES_URL = os.environ.get("HILOS_TEST_DATABASE_URL")
NATS_URL = os.environ.get("HILOS_TEST_NATS_URL")


def pytest_report_header() -> list[str]:
    postgres = POSTGRES_URL.split("@")[-1] if POSTGRES_URL else None
    return [
        f"PostgreSQL tests: {postgres or 'skipped (set HILOS_TEST_DATABASE_URL)'}",
        f"NATS tests: {NATS_URL or 'skipped (set HILOS_TEST_NATS_URL)'}",
    ]


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        if not POSTGRES_URL:
            pytest.skip("PostgreSQL backend skipped: HILOS_TEST_DATABASE_URL is not set")
        engine = make_engine(POSTGRES_URL)
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    else:
        path: Path = tmp_path_factory.mktemp("db") / "hilos.db"
        engine = make_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture(scope="session")
def app(engine: AsyncEngine) -> Any:
    settings = Settings(database_url=str(engine.url), bus_url="memory://")
    return create_app(settings, engine=engine, bus=InProcessBus())


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        yield client


@dataclass
class TenantHandle:
    id: str
    key: str
    context: TenantContext

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(sessionmaker: async_sessionmaker[AsyncSession]) -> Any:
    async def factory(name: str = "Tienda de prueba", **settings: Any) -> TenantHandle:
        async with sessionmaker() as session, session.begin():
            tenant, key = await core_service.create_tenant(session, name=name)
            for field, value in settings.items():
                setattr(tenant, field, value)
            await session.flush()
            return TenantHandle(id=tenant.id, key=key, context=TenantContext.from_row(tenant))

    return factory


@pytest.fixture
async def tenant(make_tenant: Any) -> TenantHandle:
    handle: TenantHandle = await make_tenant()
    return handle


async def add_channel(
    client: httpx.AsyncClient, tenant: TenantHandle, kind: str, name: str | None = None
) -> str:
    response = await client.post(
        "/v1/channels", json={"kind": kind, "name": name or kind}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    channel_id: str = response.json()["id"]
    return channel_id


async def inbound(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *,
    channel_id: str,
    external_id: str,
    kind: str,
    value: str,
    text: str = "Hola",
    name: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {
        "channel_id": channel_id,
        "external_id": external_id,
        "sender": {"kind": kind, "value": value, **({"name": name} if name else {})},
        "text": text,
        **extra,
    }
    return await client.post("/v1/messages/inbound", json=body, headers=tenant.headers)


async def identify(
    client: httpx.AsyncClient, tenant: TenantHandle, *identities: tuple[str, str], **extra: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/customers/identify",
        json={"identities": [{"kind": k, "value": v} for k, v in identities], **extra},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
