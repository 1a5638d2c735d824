"""Conversations follow the customer across channels, reopen, and take agent replies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.conversations.models import Message
from hilos.core import clock
from tests.conftest import TenantHandle, add_channel, identify, inbound


@pytest.fixture
def frozen_clock() -> Any:
    """A clock the test moves by hand; restored afterwards."""
    state = {"now": datetime(2026, 11, 2, 9, 0, tzinfo=UTC)}
    clock.set_now(lambda: state["now"])

    def advance(**delta: float) -> None:
        state["now"] += timedelta(**delta)

    yield advance
    clock.set_now(None)


async def test_a_message_on_another_channel_joins_the_open_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    email = await add_channel(client, tenant, "email")
    await identify(client, tenant, ("whatsapp", "34655111222"), ("email", "irene@example.es"))
    first = (
        await inbound(
            client,
            tenant,
            channel_id=whatsapp,
            external_id="w1",
            kind="whatsapp",
            value="34655111222",
            text="Quiero devolver un pedido",
        )
    ).json()
    second = (
        await inbound(
            client,
            tenant,
            channel_id=email,
            external_id="<a@mail>",
            kind="email",
            value="Irene@Example.es",
            text="Os mando la factura",
        )
    ).json()
    assert second["conversation_id"] == first["conversation_id"]
    assert second["customer_id"] == first["customer_id"]
    conversation = (
        await client.get(f"/v1/conversations/{first['conversation_id']}", headers=tenant.headers)
    ).json()
    assert [c["kind"] for c in conversation["channels"]] == ["whatsapp", "email"]
    assert conversation["last_channel_id"] == email


async def test_resolved_conversations_reopen_within_the_window_only(
    client: httpx.AsyncClient, tenant: TenantHandle, frozen_clock: Any
) -> None:
    sms = await add_channel(client, tenant, "sms")
    first = (
        await inbound(
            client, tenant, channel_id=sms, external_id="s1", kind="phone", value="+34666000111"
        )
    ).json()
    resolved = await client.patch(
        f"/v1/conversations/{first['conversation_id']}",
        json={"status": "resolved"},
        headers=tenant.headers,
    )
    assert resolved.json()["status"] == "resolved"
    frozen_clock(hours=23)
    reopened = (
        await inbound(
            client, tenant, channel_id=sms, external_id="s2", kind="phone", value="+34666000111"
        )
    ).json()
    assert reopened["conversation_id"] == first["conversation_id"]
    state = await client.get(
        f"/v1/conversations/{first['conversation_id']}", headers=tenant.headers
    )
    assert state.json()["status"] == "open"

    await client.patch(
        f"/v1/conversations/{first['conversation_id']}",
        json={"status": "resolved"},
        headers=tenant.headers,
    )
    frozen_clock(hours=25)
    fresh = (
        await inbound(
            client, tenant, channel_id=sms, external_id="s3", kind="phone", value="+34666000111"
        )
    ).json()
    assert fresh["conversation_id"] != first["conversation_id"]
    assert fresh["customer_id"] == first["customer_id"]


async def test_pending_and_snoozed_conversations_continue_and_snoozes_wake(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, frozen_clock: Any
) -> None:
    telegram = await add_channel(client, tenant, "telegram")
    first = (
        await inbound(
            client, tenant, channel_id=telegram, external_id="t1", kind="telegram", value="777001"
        )
    ).json()
    url = f"/v1/conversations/{first['conversation_id']}"
    past = await client.patch(
        url,
        json={"status": "snoozed", "snoozed_until": "2020-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert past.status_code == 422
    until = (clock.now() + timedelta(hours=2)).isoformat()
    snoozed = await client.patch(
        url, json={"status": "snoozed", "snoozed_until": until}, headers=tenant.headers
    )
    assert snoozed.json()["status"] == "snoozed"
    frozen_clock(hours=3)
    done = await app.state.worker.run_once()
    assert done["woken"] >= 1
    assert (await client.get(url, headers=tenant.headers)).json()["status"] == "open"

    await client.patch(url, json={"status": "pending"}, headers=tenant.headers)
    again = (
        await inbound(
            client, tenant, channel_id=telegram, external_id="t2", kind="telegram", value="777001"
        )
    ).json()
    assert again["conversation_id"] == first["conversation_id"]
    assert (await client.get(url, headers=tenant.headers)).json()["status"] == "open"


async def test_replies_go_out_on_the_last_inbound_channel_or_a_chosen_one(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    messenger = await add_channel(client, tenant, "messenger")
    store = await add_channel(client, tenant, "store")
    received = (
        await inbound(
            client,
            tenant,
            channel_id=whatsapp,
            external_id="w1",
            kind="whatsapp",
            value="34677888999",
        )
    ).json()
    url = f"/v1/conversations/{received['conversation_id']}/messages"

    default = await client.post(url, json={"text": "¡Hola! Ahora lo miro"}, headers=tenant.headers)
    assert default.status_code == 201
    assert default.json()["channel_id"] == whatsapp
    assert default.json()["status"] == "queued"
    assert default.json()["address"] == "whatsapp:+34677888999"

    note = await client.post(
        url, json={"text": "cliente VIP", "private": True}, headers=tenant.headers
    )
    assert note.json()["direction"] == "note"
    assert note.json()["status"] is None

    no_identity = await client.post(
        url, json={"text": "hola", "channel_id": messenger}, headers=tenant.headers
    )
    assert no_identity.status_code == 422
    assert no_identity.json()["error"]["code"] == "no_address"
    on_store = await client.post(
        url, json={"text": "hola", "channel_id": store}, headers=tenant.headers
    )
    assert on_store.status_code == 422

    await identify(client, tenant, ("whatsapp", "34677888999"), ("messenger", "psid-42"))
    switched = await client.post(
        url,
        json={"text": "Te escribo por Messenger", "channel_id": messenger},
        headers=tenant.headers,
    )
    assert switched.status_code == 201
    assert switched.json()["address"] == "messenger:psid-42"
    empty = await client.post(url, json={"text": ""}, headers=tenant.headers)
    assert empty.status_code == 422


async def test_listing_filters_and_pages(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    sms = await add_channel(client, tenant, "sms")
    instagram = await add_channel(client, tenant, "instagram")
    for n in range(5):
        await inbound(
            client,
            tenant,
            channel_id=sms,
            external_id=f"s{n}",
            kind="phone",
            value=f"+3469900000{n}",
        )
    await inbound(
        client, tenant, channel_id=instagram, external_id="ig", kind="instagram", value="ig-1"
    )
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "channel_kind": "sms"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/conversations", params=params, headers=tenant.headers)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5
    insta = await client.get(
        "/v1/conversations", params={"channel_kind": "instagram"}, headers=tenant.headers
    )
    assert len(insta.json()["items"]) == 1
    unassigned = await client.get(
        "/v1/conversations", params={"assignee_id": "none"}, headers=tenant.headers
    )
    assert len(unassigned.json()["items"]) == 6
    bad = await client.get(
        "/v1/conversations", params={"cursor": "garbage"}, headers=tenant.headers
    )
    assert bad.status_code == 422


async def test_assignment_needs_a_user_of_the_tenant(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    sms = await add_channel(client, tenant, "sms")
    received = (
        await inbound(
            client, tenant, channel_id=sms, external_id="a1", kind="phone", value="+34612121212"
        )
    ).json()
    user = await client.post(
        "/v1/users",
        json={
            "email": "agente@example.es",
            "name": "Agente",
            "role": "agent",
            "password": "secreto123",
        },
        headers=tenant.headers,
    )
    other = await make_tenant()
    foreign = await client.post(
        "/v1/users",
        json={"email": "otro@example.es", "name": "Otro", "password": "secreto123"},
        headers=other.headers,
    )
    url = f"/v1/conversations/{received['conversation_id']}"
    assert (
        await client.patch(url, json={"assignee_id": foreign.json()["id"]}, headers=tenant.headers)
    ).status_code == 404
    assigned = await client.patch(
        url, json={"assignee_id": user.json()["id"]}, headers=tenant.headers
    )
    assert assigned.json()["assignee_id"] == user.json()["id"]
    mine = await client.get(
        "/v1/conversations", params={"assignee_id": user.json()["id"]}, headers=tenant.headers
    )
    assert [c["id"] for c in mine.json()["items"]] == [received["conversation_id"]]


async def test_twenty_simultaneous_deliveries_store_one_message(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    responses = await asyncio.gather(
        *(
            inbound(
                client,
                tenant,
                channel_id=whatsapp,
                external_id="wamid.SAME",
                kind="whatsapp",
                value="34688777666",
                text="Hola, ¿abrís el domingo?",
            )
            for _ in range(20)
        )
    )
    assert {r.status_code for r in responses} == {200}
    bodies = [r.json() for r in responses]
    assert len({(b["message_id"], b["conversation_id"], b["customer_id"]) for b in bodies}) == 1
    assert sorted(b["duplicate"] for b in bodies) == [False] + [True] * 19
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(Message).where(Message.tenant_id == tenant.id)
        )
    assert count == 1
    customers = await client.get("/v1/customers", headers=tenant.headers)
    assert len(customers.json()["items"]) == 1


async def test_simultaneous_first_messages_of_a_new_customer_share_one_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    sms = await add_channel(client, tenant, "sms")
    responses = await asyncio.gather(
        *(
            inbound(
                client,
                tenant,
                channel_id=sms,
                external_id=f"burst-{n}",
                kind="phone",
                value="+34600999888",
                text=f"parte {n}",
            )
            for n in range(10)
        )
    )
    bodies = [r.json() for r in responses]
    assert len({b["conversation_id"] for b in bodies}) == 1
    assert len({b["customer_id"] for b in bodies}) == 1
    assert not any(b["duplicate"] for b in bodies)


async def test_bad_inbound_is_a_clear_4xx_and_writes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    bad_phone = await inbound(
        client, tenant, channel_id=whatsapp, external_id="x1", kind="whatsapp", value="123"
    )
    assert bad_phone.status_code == 422
    assert bad_phone.json()["error"]["field"] == "sender.value"
    naive_time = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="x2",
        kind="whatsapp",
        value="34600111000",
        sent_at="2026-11-01T10:00:00",
    )
    assert naive_time.status_code == 422
    other = await make_tenant()
    foreign_channel = await inbound(
        client, other, channel_id=whatsapp, external_id="x3", kind="whatsapp", value="34600111000"
    )
    assert foreign_channel.status_code == 404
    not_json = await client.post(
        "/v1/messages/inbound",
        content=b"{nope",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert (await client.get("/v1/customers", headers=tenant.headers)).json()["items"] == []
    assert (await client.get("/v1/customers", headers=other.headers)).json()["items"] == []


async def test_a_blocked_sender_links_nobody(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    sms = await add_channel(client, tenant, "sms")
    shop_phone = "+34910000000"
    await client.post(
        "/v1/blocked-values", json={"kind": "phone", "value": shop_phone}, headers=tenant.headers
    )
    first = (
        await inbound(
            client, tenant, channel_id=sms, external_id="b1", kind="phone", value=shop_phone
        )
    ).json()
    second = (
        await inbound(
            client, tenant, channel_id=sms, external_id="b2", kind="phone", value=shop_phone
        )
    ).json()
    assert first["customer_id"] != second["customer_id"]
    found = await client.get(
        "/v1/customers", params={"identity": f"phone:{shop_phone}"}, headers=tenant.headers
    )
    assert found.json()["items"] == []
