"""One stage's trouble does not stop the worker's others: a broken provider client still
lets the outbox flow, and the reply it could not send is kept for another try."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.channels import fake_whatsapp
from tests.channels.conftest import add_configured_channel, messages
from tests.conftest import TenantHandle


async def test_a_provider_client_that_blows_up_neither_loses_the_reply_nor_stops_the_outbox(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    channel_id = await add_configured_channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    body = json.dumps(
        fake_whatsapp.text_webhook(
            wa_id="34655000111",
            wamid="wamid.W1",
            text="Hola",
            timestamp=int(frozen_clock.now.timestamp()),
        )
    ).encode()
    stored = await client.post(
        f"/webhooks/whatsapp/{channel_id}",
        content=body,
        headers={"X-Hub-Signature-256": fake_whatsapp.sign(body)},
    )
    conversation_id = stored.json()["messages"][0]["conversation_id"]
    reply = await client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"text": "Ahora te digo"},
        headers=tenant.headers,
    )
    assert reply.status_code == 201

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in a provider client")

    worker = app.state.worker
    previous = worker.http
    worker.http = httpx.AsyncClient(transport=httpx.MockTransport(broken))
    try:
        done = await worker.run_once()
    finally:
        await worker.http.aclose()
        worker.http = previous
    assert done["published"] >= 1, done
    [_, waiting] = await messages(client, tenant, conversation_id)
    assert waiting["status"] == "queued"
    assert waiting["error"]["code"] == "adapter_error"
