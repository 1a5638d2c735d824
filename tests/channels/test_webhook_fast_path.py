"""Provider deliveries take the short way in (``app.WebhookFastPath``): answered as the app
answers them, with the request id, and without FastAPI's routing; everything else goes on to
the app untouched."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from hilos.app import WebhookFastPath
from tests.channels import fake_whatsapp as fake
from tests.channels.test_whatsapp import post_signed, whatsapp_channel
from tests.conftest import TenantHandle

SAMPLES = Path(__file__).resolve().parent / "samples"


class Behind:
    """The app behind the fast path, recording what reached it."""

    def __init__(self) -> None:
        self.reached: list[tuple[str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.reached.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})


async def test_a_delivery_is_answered_without_the_app_behind_and_the_rest_reaches_it(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    behind = Behind()
    transport = httpx.ASGITransport(app=WebhookFastPath(behind, hilos_app=app))
    body = (SAMPLES / "whatsapp-text.json").read_bytes()
    async with httpx.AsyncClient(transport=transport, base_url="http://hilos.test") as short:
        stored = await short.post(
            f"/webhooks/whatsapp/{channel_id}",
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": fake.sign(body)},
        )
        unsigned = await short.post(f"/webhooks/whatsapp/{channel_id}", content=body)
        unknown = await short.post("/webhooks/whatsapp/0000000000000000000000000000dead")
        too_large = await short.post(
            f"/webhooks/whatsapp/{channel_id}",
            content=b"{}",
            headers={"Content-Length": str(2_000_000)},
        )
        check = await short.get(f"/webhooks/whatsapp/{channel_id}")
        other = await short.post("/v1/messages/inbound", json={})
        shorter = await short.post("/webhooks/whatsapp")

    assert stored.status_code == 200, stored.text
    [message] = stored.json()["messages"]
    assert message["duplicate"] is False
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "bad_signature"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert too_large.status_code == 400
    assert too_large.json()["error"]["code"] == "too_large"
    assert (check.status_code, other.status_code, shorter.status_code) == (299, 299, 299)
    assert behind.reached == [
        ("GET", f"/webhooks/whatsapp/{channel_id}"),
        ("POST", "/v1/messages/inbound"),
        ("POST", "/webhooks/whatsapp"),
    ]


async def test_through_the_whole_app_a_delivery_keeps_its_request_id(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await whatsapp_channel(client, tenant)
    body = json.loads((SAMPLES / "whatsapp-text.json").read_text())
    answer = await post_signed(client, channel_id, body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"]
    again = await post_signed(client, channel_id, body)
    assert again.json()["messages"][0]["duplicate"] is True
