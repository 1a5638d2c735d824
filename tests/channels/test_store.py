"""Store visits and counter conversations land on the customer's one conversation."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.conversations.models import Message
from tests.channels import fake_whatsapp
from tests.channels.conftest import add_configured_channel
from tests.conftest import TenantHandle, add_channel


async def clerk(client: httpx.AsyncClient, tenant: TenantHandle, email: str) -> str:
    response = await client.post(
        "/v1/users",
        json={"email": email, "name": "Lucía Pardo", "password": "mostrador-2026", "role": "agent"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def test_a_visit_joins_the_whatsapp_conversation_and_the_timeline(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    whatsapp = await add_configured_channel(client, tenant, "whatsapp", fake_whatsapp.CONFIG)
    store = await add_channel(client, tenant, "store", "Tienda Gran Vía")
    webhook = fake_whatsapp.text_webhook(
        wa_id="34611222333", wamid="wamid.G1", text="¿Tenéis la 42 en Gran Vía?", timestamp=1
    )
    body = json.dumps(webhook).encode()
    first = await client.post(
        f"/webhooks/whatsapp/{whatsapp}",
        content=body,
        headers={"X-Hub-Signature-256": fake_whatsapp.sign(body)},
    )
    assert first.status_code == 200, first.text
    received = first.json()["messages"][0]
    clerk_id = await clerk(client, tenant, "lucia@tienda.es")
    visit = await client.post(
        f"/v1/stores/{store}/interactions",
        json={
            "kind": "visit",
            "customer": {"identities": [{"kind": "phone", "value": "611 22 23 33"}]},
            "clerk": {"user_id": clerk_id},
            "notes": "Se probó la 42, se la lleva mañana",
            "external_id": "TPV-7-000912",
            "details": {"ticket": "000912"},
        },
        headers=tenant.headers,
    )
    assert visit.status_code == 201, visit.text
    assert visit.json()["conversation_id"] == received["conversation_id"]
    assert visit.json()["customer_id"] == received["customer_id"]
    again = await client.post(
        f"/v1/stores/{store}/interactions",
        json={
            "customer": {"identities": [{"kind": "phone", "value": "+34611222333"}]},
            "external_id": "TPV-7-000912",
        },
        headers=tenant.headers,
    )
    assert again.status_code == 200
    assert again.json() == {**visit.json(), "duplicate": True}

    messages = (
        await client.get(
            f"/v1/conversations/{visit.json()['conversation_id']}/messages",
            headers=tenant.headers,
        )
    ).json()["items"]
    assert [m["kind"] for m in messages] == ["message", "visit"]
    entry = messages[1]
    assert entry["text"] == "Se probó la 42, se la lleva mañana"
    assert entry["data"]["store"] == {"channel_id": store, "name": "Tienda Gran Vía"}
    assert entry["data"]["clerk"] == {"user_id": clerk_id, "name": "Lucía Pardo"}

    profile = (
        await client.get(f"/v1/customers/{visit.json()['customer_id']}", headers=tenant.headers)
    ).json()
    assert profile["timeline"][0]["type"] == "visit"
    assert profile["timeline"][0]["properties"]["details"] == {"ticket": "000912"}

    # The agent's next reply goes back to WhatsApp: a store cannot carry a written reply.
    reply = await client.post(
        f"/v1/conversations/{visit.json()['conversation_id']}/messages",
        json={"template": {"name": "gracias_visita", "language": "es"}},
        headers=tenant.headers,
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["channel_id"] == whatsapp


async def test_a_new_walk_in_with_a_loyalty_card_and_email_becomes_one_customer(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    store = await add_channel(client, tenant, "store")
    visit = await client.post(
        f"/v1/stores/{store}/interactions",
        json={
            "kind": "conversation",
            "customer": {
                "identities": [
                    {"kind": "loyalty", "value": "es-0042"},
                    {"kind": "email", "value": "Pilar@Example.org"},
                ],
                "name": "Pilar",
            },
            "clerk": {"name": "Andrés"},
            "notes": "Pregunta por devoluciones sin ticket",
        },
        headers=tenant.headers,
    )
    assert visit.status_code == 201, visit.text
    profile = (
        await client.get(f"/v1/customers/{visit.json()['customer_id']}", headers=tenant.headers)
    ).json()
    assert {(i["kind"], i["value"]) for i in profile["identities"]} == {
        ("loyalty", "ES-0042"),
        ("email", "pilar@example.org"),
    }
    assert profile["name"] == "Pilar"


async def test_bad_store_requests_are_4xx_and_write_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: object,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    store = await add_channel(client, tenant, "store")
    whatsapp = await add_channel(client, tenant, "whatsapp")
    other = await make_tenant("Otra tienda")  # type: ignore[operator]
    other_store = await add_channel(client, other, "store")
    other_clerk = await clerk(client, other, "otro@otra.es")
    phone = {"customer": {"identities": [{"kind": "phone", "value": "+34611000111"}]}}
    cases = [
        (f"/v1/stores/{other_store}/interactions", phone, 404),
        (f"/v1/stores/{whatsapp}/interactions", phone, 422),
        (f"/v1/stores/{store}/interactions", {**phone, "clerk": {"user_id": other_clerk}}, 404),
        (
            f"/v1/stores/{store}/interactions",
            {"customer": {"identities": [{"kind": "phone", "value": "12"}]}},
            422,
        ),
        (f"/v1/stores/{store}/interactions", {"customer": {"identities": []}}, 422),
        (f"/v1/stores/{store}/interactions", {**phone, "kind": "party"}, 422),
    ]
    for url, body, status in cases:
        response = await client.post(url, json=body, headers=tenant.headers)
        assert response.status_code == status, (body, response.text)
        assert response.json()["error"]["message"]
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.tenant_id == tenant.id)
        )
    assert count == 0
