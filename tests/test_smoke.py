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
