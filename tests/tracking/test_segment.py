"""The Segment-compatible events API, called the way Segment's libraries call it."""

from __future__ import annotations

import base64

import httpx

from tests.conftest import TenantHandle


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


async def test_anonymous_events_join_the_customer_when_identified(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    auth = basic(tenant.key)
    page = await client.post(
        "/v1/page",
        json={
            "anonymousId": "anon-7",
            "name": "Zapatillas",
            "messageId": "m-1",
            "properties": {"url": "https://tienda.example.es/zapatillas"},
            "timestamp": "2026-11-20T10:00:00Z",
        },
        headers=auth,
    )
    assert page.status_code == 200, page.text
    track = await client.post(
        "/v1/track",
        json={
            "anonymousId": "anon-7",
            "event": "Product Added",
            "messageId": "m-2",
            "properties": {"sku": "ZAP-42"},
            "timestamp": "2026-11-20T10:01:00Z",
        },
        headers=auth,
    )
    anonymous_customer = track.json()["customer_id"]
    assert page.json()["customer_id"] == anonymous_customer

    known = await client.post(
        "/v1/identify",
        json={
            "userId": "u-100",
            "traits": {
                "email": "Carmen@Example.es",
                "firstName": "Carmen",
                "lastName": "Ruiz",
                "plan": "gold",
            },
            "messageId": "m-3",
        },
        headers={"Authorization": f"Bearer {tenant.key}"},
    )
    assert known.status_code == 200
    joined = await client.post(
        "/v1/identify",
        json={"userId": "u-100", "anonymousId": "anon-7", "messageId": "m-4"},
        headers=auth,
    )
    customer_id = joined.json()["customer_id"]
    view = (await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)).json()
    assert view["name"] == "Carmen Ruiz"
    assert view["traits"]["plan"] == "gold"
    names = [item["name"] for item in view["timeline"] if item["type"] in ("page", "track")]
    assert names == ["Product Added", "Zapatillas"]
    assert {(i["kind"], i["value"]) for i in view["identities"]} >= {
        ("external", "u-100"),
        ("anonymous", "anon-7"),
        ("email", "carmen@example.es"),
    }
    # The anonymous profile is the older one, so it survives; the identified one redirects.
    assert customer_id == anonymous_customer
    merged_away = await client.get(
        f"/v1/customers/{known.json()['customer_id']}", headers=tenant.headers
    )
    assert merged_away.status_code == 307
    assert merged_away.headers["location"].endswith(customer_id)


async def test_a_resent_message_id_changes_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    body = {
        "userId": "u-1",
        "event": "Order Completed",
        "messageId": "dup-1",
        "properties": {"total": 4599, "currency": "EUR"},
    }
    first = await client.post("/v1/track", json=body, headers=tenant.headers)
    second = await client.post("/v1/track", json=body, headers=tenant.headers)
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is True
    assert second.json()["event_id"] == first.json()["event_id"]
    view = (
        await client.get(f"/v1/customers/{first.json()['customer_id']}", headers=tenant.headers)
    ).json()
    assert [i["name"] for i in view["timeline"]] == ["Order Completed"]


async def test_batch_is_all_or_nothing_and_names_the_bad_message(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    good = {"type": "track", "userId": "u-9", "event": "Viewed", "messageId": "b-1"}
    bad = {"type": "identify", "userId": "u-9", "traits": {"email": "nope"}, "messageId": "b-2"}
    rejected = await client.post("/v1/batch", json={"batch": [good, bad]}, headers=tenant.headers)
    assert rejected.status_code == 422
    assert rejected.json()["error"]["field"] == "batch[1].traits.email"
    lookup = await client.get(
        "/v1/customers", params={"identity": "external:u-9"}, headers=tenant.headers
    )
    assert lookup.json()["items"] == []

    accepted = await client.post(
        "/v1/batch",
        json={
            "batch": [
                good,
                {"type": "screen", "userId": "u-9", "name": "Home", "messageId": "b-3"},
                {"type": "alias", "previousId": "u-9", "userId": "u-10", "messageId": "b-4"},
            ]
        },
        headers=tenant.headers,
    )
    assert accepted.status_code == 200, accepted.text
    results = accepted.json()["results"]
    assert len({r["customer_id"] for r in results}) == 1
    lookup = await client.get(
        "/v1/customers", params={"identity": "external:u-10"}, headers=tenant.headers
    )
    assert [c["id"] for c in lookup.json()["items"]] == [results[0]["customer_id"]]


async def test_calls_without_a_person_or_key_are_rejected(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    nobody = await client.post("/v1/track", json={"event": "x"}, headers=tenant.headers)
    assert nobody.status_code == 422
    unknown_type = await client.post(
        "/v1/batch", json={"batch": [{"type": "group", "userId": "u"}]}, headers=tenant.headers
    )
    assert unknown_type.status_code == 422
    no_key = await client.post(
        "/v1/track", json={"userId": "u", "event": "x"}, headers=basic("wrong")
    )
    assert no_key.status_code == 401
