"""``GET /v1/customers/{id}/export``: everything Hilos holds about a customer, from every domain,
as one JSON document; admins only (see test_erase), and only their own tenant's customers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from hilos.conversations.models import Message
from hilos.core.clock import now
from hilos.core.ids import new_id
from hilos.privacy.spec import PARTS, STORED_FILES
from tests.conftest import TenantHandle, add_channel, inbound
from tests.privacy.story import amparo
from tests.test_query_counts import statements


async def test_the_export_holds_every_domain_of_a_customer_who_used_them_all(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    story = await amparo(client, tenant, app)
    response = await client.get(f"/v1/customers/{story.merged_id}/export", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        f'attachment; filename="customer-{story.customer_id}.json"'
    )
    document = response.json()
    assert document["format"] == "hilos.customer-export"
    assert document["customer_id"] == story.customer_id
    assert set(document["customer_ids"]) == {story.customer_id, story.merged_id}
    assert document["erased_at"] is None
    data = document["data"]
    # Every domain that holds something about a customer has her rows.
    empty = sorted(
        name for name in [p.table_name for p in PARTS] + [STORED_FILES] if not data[name]
    )
    assert empty == []
    assert document["rows"] == {name: len(rows) for name, rows in data.items()}

    person = story.person
    assert {p["name"] for p in data["customers"]} == {person.name}
    assert {(i["kind"], i["value"]) for i in data["identities"]} >= {
        ("email", person.email),
        ("phone", person.phone),
        ("whatsapp", person.phone),
    }
    kinds = {m["kind"] for m in data["messages"]}
    assert kinds >= {"message", "visit"}
    texts = " ".join(m["text"] for m in data["messages"])
    assert "DNI 12345678Z" in texts
    assert "Calle del Pez 12" in texts
    assert "sofá cama" in texts
    assert data["orders"][0]["ship_to"]["address"] == "Calle del Pez 12, Madrid"
    assert {line["sku"] for line in data["order_lines"]} == {"SOFA", "COJIN"}
    assert [h["status"] for h in data["order_history"]] == ["placed", "shipped", "delivered"]
    assert data["returns"][0]["reason"] == "A Amparo Quintanilla no le gustó el color"
    assert data["survey_responses"][0]["comment"] == "Las respuestas tardaron muchísimo"
    assert data["reviews"][0]["author"] == "Amparo Quintanilla"
    assert data["merges"][0]["merged_id"] == story.merged_id
    assert [e["action"] for e in data["audit_log"]] == ["customer.merged"]
    [attachment] = data[STORED_FILES]
    assert attachment["filename"] == "dni-quintanilla.pdf"
    assert attachment["url"] == f"/v1/files/{attachment['id']}"
    assert "content" not in attachment
    # Secrets of the shop are not the customer's data.
    assert "token_hash" not in data["webchat_visitors"][0]
    assert all("unsubscribe_token" not in send for send in data["sends"])
    assert isinstance(document["derived"]["recommendations"], list)

    log = await client.get(
        "/v1/audit-log", params={"action": "customer.exported"}, headers=tenant.headers
    )
    [entry] = log.json()["items"]
    assert entry["subject_id"] == story.customer_id
    assert entry["actor"]["type"] == "api_key"
    assert entry["request_id"] == response.headers["x-request-id"]
    assert entry["details"]["rows"]["messages"] == len(data["messages"])
    assert person.email not in str(entry)


async def test_a_customer_with_ten_thousand_messages_is_exported_and_erased_in_a_few_pages(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    first = await inbound(
        client, tenant, channel_id=channel, external_id="wa-0", kind="whatsapp", value="34611000000"
    )
    assert first.status_code == 200, first.text
    received = first.json()
    start = now() - timedelta(days=30)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            insert(Message),
            [
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "conversation_id": received["conversation_id"],
                    "channel_id": channel,
                    "direction": "inbound" if n % 2 else "outbound",
                    "external_id": f"wa-{uuid.uuid4().hex}",
                    "text": f"mensaje {n}",
                    "attachments": [],
                    "kind": "message",
                    "sent_at": start + timedelta(seconds=n),
                    "created_at": start + timedelta(seconds=n),
                }
                for n in range(10_000)
            ],
        )

    with statements(engine) as seen:
        response = await client.get(
            f"/v1/customers/{received['customer_id']}/export", headers=tenant.headers
        )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["messages"]) == 10_001
    # A statement per part and per page of a thousand rows, never one per message.
    assert len(seen) < 80, len(seen)

    with statements(engine) as erasing:
        erased = await client.post(
            f"/v1/customers/{received['customer_id']}/erase", headers=tenant.headers
        )
    assert erased.status_code == 200, erased.text
    assert erased.json()["rows"]["messages"] == 10_001
    assert len(erasing) < 120, len(erasing)
