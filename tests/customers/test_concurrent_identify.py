"""Identify under concurrency: simultaneous calls about the same person make one customer."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import TenantHandle, add_channel, identify


async def profile_ids(
    client: httpx.AsyncClient, tenant: TenantHandle, *pairs: tuple[str, str]
) -> set[str]:
    found = set()
    for kind, value in pairs:
        response = await client.get(
            "/v1/customers", params={"identity": f"{kind}:{value}"}, headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        [holder] = response.json()["items"]
        found.add(holder["id"])
    return found


async def test_the_same_new_person_identified_ten_times_at_once_is_one_customer(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    results = await asyncio.gather(
        *(
            identify(client, tenant, ("email", "nuevo@example.org"), ("phone", "+34600999888"))
            for _ in range(10)
        )
    )
    assert len({r["customer_id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1


async def test_overlapping_calls_at_once_end_as_one_customer(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    calls = [
        (("email", "a@example.org"), ("phone", "+34600111001")),
        (("email", "a@example.org"), ("phone", "+34600111002")),
        (("email", "b@example.org"), ("phone", "+34600111001")),
        (("email", "b@example.org"), ("phone", "+34600111002")),
    ] * 3
    await asyncio.gather(*(identify(client, tenant, *pairs) for pairs in calls))
    holders = await profile_ids(
        client,
        tenant,
        ("email", "a@example.org"),
        ("email", "b@example.org"),
        ("phone", "+34600111001"),
        ("phone", "+34600111002"),
    )
    assert len(holders) == 1


async def test_a_first_message_and_an_identify_of_the_same_phone_at_once_meet(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    sms = await add_channel(client, tenant, "sms")

    async def message(index: int) -> httpx.Response:
        return await client.post(
            "/v1/messages/inbound",
            json={
                "channel_id": sms,
                "external_id": f"race-{index}",
                "sender": {"kind": "phone", "value": "+34600222333"},
                "text": "Hola",
            },
            headers=tenant.headers,
        )

    answers = await asyncio.gather(
        *(message(i) for i in range(4)),
        *(
            identify(client, tenant, ("phone", "+34600222333"), ("email", "c@example.org"))
            for _ in range(4)
        ),
    )
    for answer in answers[:4]:
        assert isinstance(answer, httpx.Response)
        assert answer.status_code == 200, answer.text
    holders = await profile_ids(
        client, tenant, ("phone", "+34600222333"), ("email", "c@example.org")
    )
    assert len(holders) == 1
