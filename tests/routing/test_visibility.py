"""What an agent sees through the conversations API: the conversations assigned or offered to
them and those routed through their queues; any other is a 404, as another tenant's is.
Supervisors and admins see all of their tenant's.

A key created for a user (``POST /v1/api-keys`` with ``user_id``) acts as that user. An
agent-role key bound to nobody (an integration's) keeps seeing the tenant's conversations, as
documented in ``hilos.conversations.api``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import TenantHandle, add_channel, inbound
from tests.routing.helpers import conversation, create_agent, create_queue

BindKey = Callable[[str], Awaitable[dict[str, str]]]


@pytest.fixture
def bind_key(client: httpx.AsyncClient, tenant: TenantHandle) -> BindKey:
    """``await bind_key(user_id)``: headers of a new agent-role key of that user."""

    async def bind(user_id: str) -> dict[str, str]:
        created = await client.post(
            "/v1/api-keys",
            json={"name": f"key of {user_id}", "role": "agent", "user_id": user_id},
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["user_id"] == user_id
        return {"Authorization": f"Bearer {created.json()['key']}"}

    return bind


async def role_key(client: httpx.AsyncClient, tenant: TenantHandle, role: str) -> dict[str, str]:
    created = await client.post(
        "/v1/api-keys", json={"name": role, "role": role}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


async def writes(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, channel: str, kind: str, value: str
) -> str:
    response = await inbound(
        client,
        tenant,
        channel_id=channel,
        external_id=f"m-{uuid.uuid4().hex}",
        kind=kind,
        value=value,
    )
    assert response.status_code == 200, response.text
    await app.state.worker.run_once()
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


async def listed(client: httpx.AsyncClient, headers: dict[str, str], **query: Any) -> list[str]:
    """Every conversation id the caller's listing gives, following the cursors."""
    ids: list[str] = []
    cursor = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/v1/conversations", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        ids.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def test_an_agent_sees_only_their_queues_and_their_own_conversations(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    bind_key: BindKey,
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    email = await add_channel(client, tenant, "email")
    sms = await add_channel(client, tenant, "sms")
    spanish = await create_queue(client, tenant, "Soporte ES", skills=["es"])
    english = await create_queue(client, tenant, "Email EN", skills=["en"], channel_kinds=["email"])
    ana = await create_agent(client, tenant, "ana@tienda.es", skills={"es": 2}, online=False)
    bruno = await create_agent(client, tenant, "bruno@tienda.es", skills={"en": 2}, online=False)

    in_spanish = await writes(app, client, tenant, whatsapp, "whatsapp", "+34600300001")
    in_english = await writes(app, client, tenant, email, "email", "john@example.com")
    handed_to_ana = await writes(app, client, tenant, email, "email", "mary@example.com")
    # No queue serves SMS: routed nowhere, it is nobody's but the supervisors'.
    unrouted = await writes(app, client, tenant, sms, "phone", "+34600300004")
    assert (await conversation(client, tenant, in_spanish))["queue"] == spanish["id"]
    assert (await conversation(client, tenant, in_english))["queue"] == english["id"]
    transferred = await client.post(
        f"/v1/conversations/{handed_to_ana}/transfer",
        json={"agent_id": ana, "note": "Habla español"},
        headers=tenant.headers,
    )
    assert transferred.status_code == 200, transferred.text
    other = await make_tenant("Otra tienda")
    foreign_channel = await add_channel(client, other, "whatsapp")
    foreign = await writes(app, client, other, foreign_channel, "whatsapp", "+34600300005")

    as_ana = await bind_key(ana)
    as_bruno = await bind_key(bruno)

    # Listing: Ana's queue and what was handed to her; Bruno's queue (the one Ana's came from).
    assert set(await listed(client, as_ana)) == {in_spanish, handed_to_ana}
    assert set(await listed(client, as_ana, limit=1)) == {in_spanish, handed_to_ana}
    assert await listed(client, as_ana, status="resolved") == []
    assert set(await listed(client, as_bruno)) == {in_english, handed_to_ana}

    # One by one: what she may see answers, the rest is not found, whatever the verb.
    for visible in (in_spanish, handed_to_ana):
        response = await client.get(f"/v1/conversations/{visible}", headers=as_ana)
        assert response.status_code == 200, response.text
        messages = await client.get(f"/v1/conversations/{visible}/messages", headers=as_ana)
        assert messages.status_code == 200, messages.text
    for hidden in (in_english, unrouted, foreign):
        attempts = [
            ("GET", f"/v1/conversations/{hidden}", None),
            ("PATCH", f"/v1/conversations/{hidden}", {"status": "resolved"}),
            ("GET", f"/v1/conversations/{hidden}/messages", None),
            ("POST", f"/v1/conversations/{hidden}/messages", {"text": "Hola", "private": True}),
        ]
        for method, url, body in attempts:
            response = await client.request(method, url, json=body, headers=as_ana)
            assert response.status_code == 404, (method, url, response.text)
            assert response.json()["error"]["code"] == "not_found"
    # Nothing was written by the refused calls.
    assert (await conversation(client, tenant, in_english))["status"] == "open"
    notes = await client.get(f"/v1/conversations/{in_english}/messages", headers=tenant.headers)
    assert [m["direction"] for m in notes.json()["items"]] == ["inbound"]

    # What she sees she can work on.
    note = await client.post(
        f"/v1/conversations/{handed_to_ana}/messages",
        json={"text": "Lo miro yo", "private": True},
        headers=as_ana,
    )
    assert note.status_code == 201, note.text
    pending = await client.patch(
        f"/v1/conversations/{in_spanish}", json={"status": "pending"}, headers=as_ana
    )
    assert pending.status_code == 200, pending.text


async def test_supervisors_admins_and_integration_keys_see_every_conversation(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, bind_key: BindKey
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    sms = await add_channel(client, tenant, "sms")
    await create_queue(client, tenant, "Soporte ES", skills=["es"])
    ana = await create_agent(client, tenant, "ana@tienda.es", skills={"en": 1}, online=False)
    queued = await writes(app, client, tenant, whatsapp, "whatsapp", "+34600300011")
    unrouted = await writes(app, client, tenant, sms, "phone", "+34600300012")

    everyone = {queued, unrouted}
    for headers in (
        tenant.headers,
        await role_key(client, tenant, "supervisor"),
        # An integration's agent-role key, bound to nobody.
        await role_key(client, tenant, "agent"),
    ):
        assert set(await listed(client, headers)) == everyone
        for conversation_id in everyone:
            response = await client.get(f"/v1/conversations/{conversation_id}", headers=headers)
            assert response.status_code == 200, response.text
    # Ana lacks the queue's skill: she sees neither.
    as_ana = await bind_key(ana)
    assert await listed(client, as_ana) == []
    assert (await client.get(f"/v1/conversations/{queued}", headers=as_ana)).status_code == 404


async def test_a_users_key_cannot_have_more_rights_than_the_user_nor_name_another_tenants(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    agent = await create_agent(client, tenant, "clara@tienda.es")
    too_much = await client.post(
        "/v1/api-keys",
        json={"name": "clara admin", "role": "admin", "user_id": agent},
        headers=tenant.headers,
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["field"] == "role"
    other = await make_tenant("Otra")
    foreign = await client.post(
        "/v1/api-keys",
        json={"name": "x", "role": "agent", "user_id": agent},
        headers=other.headers,
    )
    assert foreign.status_code == 404
