"""The service answers health checks and refuses anonymous calls."""

from __future__ import annotations

import httpx


async def test_healthz_and_readyz_report_the_database(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] in {"sqlite", "postgresql"}


async def test_missing_key_is_401_with_json_error(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/conversations")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["x-request-id"]


async def test_readyz_says_not_ready_when_the_database_is_unreachable() -> None:
    from hilos.app import create_app
    from hilos.core.settings import Settings

    app = create_app(Settings(database_url="postgresql+asyncpg://nobody@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as client:
        response = await client.get("/readyz")
        alive = await client.get("/healthz")
    await app.state.engine.dispose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert alive.status_code == 200
