"""Phone calls from any telephony system: JSON call events, one entry per call, call-backs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.conversations.models import Message
from hilos.core.models import OutboxEvent
from hilos.tasks.models import Task
from tests.channels.conftest import add_configured_channel, messages
from tests.conftest import TenantHandle, identify

TOKEN = "pbx-shared-secret-42"
CALLER = "+34633445566"


async def voice_channel(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    return await add_configured_channel(client, tenant, "voice", {"auth_token": TOKEN})


def call_event(
    call_id: str, event: str, at: str = "2026-11-22T10:05:00+01:00", **extra: Any
) -> Any:
    return {
        "call_id": call_id,
        "event": event,
        "from": CALLER,
        "to": "+34910111444",
        "occurred_at": at,
        **extra,
    }


async def post_event(
    client: httpx.AsyncClient,
    channel_id: str,
    payload: Any,
    *,
    auth: str = "bearer",
    token: str = TOKEN,
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if auth == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif auth == "signature":
        digest = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Hilos-Signature-256"] = f"sha256={digest}"
    return await client.post(f"/webhooks/voice/{channel_id}", content=body, headers=headers)


async def stored(sessionmaker: async_sessionmaker[AsyncSession], channel_id: str) -> int:
    async with sessionmaker() as session:
        found = await session.scalar(
            select(func.count()).select_from(Message).where(Message.channel_id == channel_id)
        )
    return int(found or 0)


async def topics(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, topic: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == topic)
            .order_by(OutboxEvent.id)
        )
        return list(rows)


async def the_call(client: httpx.AsyncClient, tenant: TenantHandle) -> Any:
    [conversation] = (await client.get("/v1/conversations", headers=tenant.headers)).json()["items"]
    [call] = [m for m in await messages(client, tenant, conversation["id"]) if m["kind"] == "call"]
    return call


async def test_a_bearer_token_or_a_body_signature_is_accepted(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    channel_id = await voice_channel(client, tenant)
    by_token = await post_event(client, channel_id, call_event("c-1", "ringing"))
    assert by_token.status_code == 200, by_token.text
    assert by_token.json()["calls"] == 1
    signed = await post_event(client, channel_id, call_event("c-1", "answered"), auth="signature")
    assert signed.status_code == 200, signed.text
    call = await the_call(client, tenant)
    assert [e["event"] for e in call["data"]["events"]] == ["ringing", "answered"]


@pytest.mark.parametrize(
    ("auth", "token"),
    [("none", TOKEN), ("bearer", "guess"), ("signature", "guess")],
)
async def test_a_wrong_or_missing_credential_is_401_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    auth: str,
    token: str,
) -> None:
    channel_id = await voice_channel(client, tenant)
    response = await post_event(
        client, channel_id, call_event("c-401", "missed"), auth=auth, token=token
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "bad_signature"
    assert await stored(sessionmaker, channel_id) == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", "JSON"),
        ([call_event("c-2", "ringing")], "object"),
        ({k: v for k, v in call_event("c-2", "ringing").items() if k != "call_id"}, "call_id"),
        (call_event("c-2", "ringing", at="2026-11-22T10:05:00"), "occurred_at"),
        (call_event("c-2", "ended", duration_seconds="long"), "duration_seconds"),
        ({**call_event("c-2", "ringing"), "from": None}, "from"),
        (call_event("c-2", "ringing", direction="sideways"), "direction"),
        (call_event("c-2", "ringing", **{"from": "not-a-number"}), "from: 'not-a-number'"),
    ],
)
async def test_a_malformed_event_is_400_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    payload: Any,
    field: str,
) -> None:
    channel_id = await voice_channel(client, tenant)
    response = await post_event(client, channel_id, payload)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]["message"]
    assert await stored(sessionmaker, channel_id) == 0


async def test_an_event_it_does_not_know_is_acknowledged_and_ignored(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await voice_channel(client, tenant)
    response = await post_event(client, channel_id, call_event("c-3", "transferred"))
    assert response.status_code == 200
    assert response.json()["ignored"] == ["call event 'transferred'"]
    assert await stored(sessionmaker, channel_id) == 0


async def test_events_out_of_order_and_repeated_make_one_entry_that_never_goes_back(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await voice_channel(client, tenant)
    ended = call_event("c-4", "ended", at="2026-11-22T10:09:07+01:00", duration_seconds=187)
    answered = call_event("c-4", "answered", at="2026-11-22T10:06:00+01:00")
    ringing = call_event("c-4", "ringing", at="2026-11-22T10:05:50+01:00", caller_name="Ana")
    for payload in (ended, answered, ended, ringing, ringing):
        assert (await post_event(client, channel_id, payload)).status_code == 200
    call = await the_call(client, tenant)
    assert call["data"]["status"] == "ended"
    assert call["data"]["duration_seconds"] == 187
    assert call["data"]["events"] == [
        {"event": "ringing", "at": "2026-11-22T09:05:50+00:00"},
        {"event": "answered", "at": "2026-11-22T09:06:00+00:00"},
        {"event": "ended", "at": "2026-11-22T09:09:07+00:00"},
    ]
    assert call["sent_at"].startswith("2026-11-22T09:05:50")
    assert await topics(sessionmaker, tenant, "call.ringing") == [], "no pop after the call ended"
    assert len(await topics(sessionmaker, tenant, "call.ended")) == 1
    assert await stored(sessionmaker, channel_id) == 1


async def test_events_of_one_call_arriving_together_make_one_entry(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await voice_channel(client, tenant)
    events = [
        call_event("c-5", "ringing", at="2026-11-22T10:05:00+00:00"),
        call_event("c-5", "missed", at="2026-11-22T10:05:30+00:00"),
        call_event("c-5", "voicemail", at="2026-11-22T10:06:10+00:00", transcript="Llamadme"),
    ]
    responses = await asyncio.gather(*(post_event(client, channel_id, e) for e in events * 3))
    assert {r.status_code for r in responses} == {200}
    assert await stored(sessionmaker, channel_id) == 1
    call = await the_call(client, tenant)
    assert call["data"]["status"] == "voicemail"
    assert [e["event"] for e in call["data"]["events"]] == ["ringing", "missed", "voicemail"]
    assert call["text"] == "Llamadme"
    async with sessionmaker() as session:
        tasks = await session.scalar(
            select(func.count()).select_from(Task).where(Task.tenant_id == tenant.id)
        )
    assert tasks == 1
    assert len(await topics(sessionmaker, tenant, "task.created")) == 1


async def test_a_missed_call_opens_one_call_back_task_even_when_retried(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    known = await identify(client, tenant, ("phone", "633 445 566"), ("email", "ana@example.es"))
    channel_id = await voice_channel(client, tenant)
    ringing = call_event("c-6", "ringing", at="2026-11-22T10:05:00+00:00")
    missed = call_event("c-6", "missed", at="2026-11-22T10:05:40+00:00")
    assert (await post_event(client, channel_id, ringing)).status_code == 200
    for _ in range(3):
        assert (await post_event(client, channel_id, missed)).status_code == 200
    [pop] = await topics(sessionmaker, tenant, "call.ringing")
    assert pop["customer_id"] == known["customer_id"]
    page = (await client.get("/v1/tasks?status=open&kind=call_back", headers=tenant.headers)).json()
    [task] = page["items"]
    call = await the_call(client, tenant)
    assert task["source_id"] == call["id"]
    assert task["customer_id"] == known["customer_id"]
    assert task["conversation_id"] == call["conversation_id"]
    assert task["data"]["caller"] == CALLER
    assert task["due_at"].startswith("2026-11-22T10:05:40")
    [created] = await topics(sessionmaker, tenant, "task.created")
    assert created["task_id"] == task["id"]
    profile = (
        await client.get(f"/v1/customers/{known['customer_id']}", headers=tenant.headers)
    ).json()
    assert [(i["id"], i["channel_kind"]) for i in profile["timeline"]] == [(call["id"], "phone")]


async def test_a_known_caller_lands_in_their_existing_conversation(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    known = await identify(client, tenant, ("phone", CALLER), ("email", "ana@example.es"))
    sms = await add_configured_channel(client, tenant, "sms", {})
    inbound = await client.post(
        "/v1/messages/inbound",
        json={
            "channel_id": sms,
            "external_id": "sms-1",
            "sender": {"kind": "phone", "value": CALLER},
            "text": "Os llamo ahora",
        },
        headers=tenant.headers,
    )
    assert inbound.json()["customer_id"] == known["customer_id"]
    channel_id = await voice_channel(client, tenant)
    response = await post_event(client, channel_id, call_event("c-7", "ringing"))
    assert response.status_code == 200
    call = await the_call(client, tenant)
    assert call["conversation_id"] == inbound.json()["conversation_id"]


async def test_an_outbound_call_back_is_an_outbound_entry_and_opens_no_task(
    client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    channel_id = await voice_channel(client, tenant)
    payload = {
        "call_id": "c-8",
        "event": "missed",
        "from": "+34910111444",
        "to": CALLER,
        "direction": "outbound",
        "occurred_at": "2026-11-22T11:00:00Z",
    }
    ringing = {**payload, "event": "ringing", "occurred_at": "2026-11-22T10:59:50Z"}
    assert (await post_event(client, channel_id, ringing)).status_code == 200
    assert (await post_event(client, channel_id, payload)).status_code == 200
    call = await the_call(client, tenant)
    assert call["direction"] == "outbound"
    assert [e["event"] for e in call["data"]["events"]] == ["ringing", "missed"]
    assert await topics(sessionmaker, tenant, "call.ringing") == [], "an agent's call pops nothing"
    assert call["address"] == f"phone:{CALLER}"
    assert call["data"]["status"] == "missed"
    assert (await client.get("/v1/tasks", headers=tenant.headers)).json()["items"] == []
