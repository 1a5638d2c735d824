"""Identity resolution as an integrator sees it through POST /v1/customers/identify."""

from __future__ import annotations

import httpx

from tests.conftest import TenantHandle, add_channel, identify, inbound


async def test_values_are_normalised_before_matching(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    first = await identify(
        client, tenant, ("email", "Ana.Garcia@Example.ES"), ("phone", "600 111 222")
    )
    assert first["created"] is True
    again = await identify(client, tenant, ("phone", "+34 600-111-222"))
    assert again["customer_id"] == first["customer_id"]
    assert again["created"] is False
    view = (
        await client.get(f"/v1/customers/{first['customer_id']}", headers=tenant.headers)
    ).json()
    assert {(i["kind"], i["value"]) for i in view["identities"]} == {
        ("email", "ana.garcia@example.es"),
        ("phone", "+34600111222"),
    }


async def test_invalid_values_are_422_naming_the_field_and_write_nothing(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    response = await client.post(
        "/v1/customers/identify",
        json={
            "identities": [
                {"kind": "email", "value": "ok@example.es"},
                {"kind": "phone", "value": "12"},
            ]
        },
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "identities[1]"
    found = await client.get(
        "/v1/customers", params={"identity": "email:ok@example.es"}, headers=tenant.headers
    )
    assert found.json()["items"] == []
    bad_email = await client.post(
        "/v1/customers/identify",
        json={"identities": [{"kind": "email", "value": "not-an-email"}]},
        headers=tenant.headers,
    )
    assert bad_email.status_code == 422
    assert "email" in bad_email.json()["error"]["message"]


async def test_a_shared_value_merges_into_the_oldest_and_unmerge_restores(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    older = await identify(client, tenant, ("email", "lucia@example.es"), name="Lucía")
    newer = await identify(client, tenant, ("phone", "+34611222333"), traits={"city": "Sevilla"})
    bridge = await identify(
        client, tenant, ("email", "lucia@example.es"), ("phone", "+34611222333")
    )
    assert bridge["customer_id"] == older["customer_id"]
    assert bridge["merged_customer_ids"] == [newer["customer_id"]]

    redirect = await client.get(f"/v1/customers/{newer['customer_id']}", headers=tenant.headers)
    assert redirect.status_code == 307
    assert redirect.headers["location"].endswith(older["customer_id"])
    survivor = (await client.get(redirect.headers["location"], headers=tenant.headers)).json()
    assert survivor["traits"]["city"] == "Sevilla"
    assert len(survivor["identities"]) == 2

    undo = await client.post(
        f"/v1/customers/{newer['customer_id']}/unmerge", headers=tenant.headers
    )
    assert undo.status_code == 200, undo.text
    restored = await client.get(f"/v1/customers/{newer['customer_id']}", headers=tenant.headers)
    assert restored.status_code == 200
    assert [i["value"] for i in restored.json()["identities"]] == ["+34611222333"]
    kept = (
        await client.get(f"/v1/customers/{older['customer_id']}", headers=tenant.headers)
    ).json()
    assert [i["value"] for i in kept["identities"]] == ["lucia@example.es"]
    assert "city" not in kept["traits"]
    again = await client.post(
        f"/v1/customers/{newer['customer_id']}/unmerge", headers=tenant.headers
    )
    assert again.status_code == 409


async def test_blocked_values_never_link_anyone(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    blocked = await client.post(
        "/v1/blocked-values",
        json={"kind": "email", "value": "TEST@test.com", "reason": "placeholder"},
        headers=tenant.headers,
    )
    assert blocked.status_code == 201
    one = await identify(client, tenant, ("email", "test@test.com"), ("phone", "+34622000001"))
    two = await identify(client, tenant, ("email", "test@test.com"), ("phone", "+34622000002"))
    assert one["customer_id"] != two["customer_id"]
    assert one["ignored"][0]["reason"] == "blocked"


async def test_a_shared_family_email_does_not_build_a_blob_customer(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    mother = await identify(client, tenant, ("external", "crm-1"), ("email", "familia@example.es"))
    son = await identify(client, tenant, ("external", "crm-2"), ("email", "familia@example.es"))
    assert son["customer_id"] != mother["customer_id"]
    assert son["conflicts"][0]["kind"] == "email"
    assert son["conflicts"][0]["reason"] == "identity_limit"
    still = await identify(client, tenant, ("external", "crm-1"))
    assert still["customer_id"] == mother["customer_id"]
    assert still["merged_customer_ids"] == []


async def test_merging_two_open_conversations_keeps_one_in_time_order(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    email = await add_channel(client, tenant, "email")
    first = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="wa-1",
        kind="whatsapp",
        value="34633444555",
        text="¿Tenéis la talla M?",
        sent_at="2026-11-01T10:00:00Z",
    )
    second = await inbound(
        client,
        tenant,
        channel_id=email,
        external_id="mail-1",
        kind="email",
        value="pablo@example.es",
        text="Sigo esperando respuesta",
        sent_at="2026-11-01T10:05:00Z",
    )
    third = await inbound(
        client,
        tenant,
        channel_id=whatsapp,
        external_id="wa-2",
        kind="whatsapp",
        value="34633444555",
        text="¿Hola?",
        sent_at="2026-11-01T10:10:00Z",
    )
    assert first.json()["conversation_id"] != second.json()["conversation_id"]
    merged = await identify(
        client, tenant, ("whatsapp", "34633444555"), ("email", "pablo@example.es")
    )
    assert merged["merged_customer_ids"] == [second.json()["customer_id"]]

    open_list = await client.get(
        "/v1/conversations",
        params={"customer_id": merged["customer_id"], "status": "open"},
        headers=tenant.headers,
    )
    conversations = open_list.json()["items"]
    assert len(conversations) == 1
    assert {c["kind"] for c in conversations[0]["channels"]} == {"whatsapp", "email"}
    messages = await client.get(
        f"/v1/conversations/{conversations[0]['id']}/messages", headers=tenant.headers
    )
    assert [m["external_id"] for m in messages.json()["items"]] == ["wa-1", "mail-1", "wa-2"]
    assert third.json()["conversation_id"] == first.json()["conversation_id"]

    undo = await client.post(
        f"/v1/customers/{merged['customer_id']}/unmerge", headers=tenant.headers
    )
    assert undo.status_code == 200
    back = await client.get(
        f"/v1/conversations/{second.json()['conversation_id']}/messages", headers=tenant.headers
    )
    assert [m["external_id"] for m in back.json()["items"]] == ["mail-1"]
    restored = await client.get(
        f"/v1/conversations/{second.json()['conversation_id']}", headers=tenant.headers
    )
    assert restored.json()["status"] == "open"
    assert restored.json()["customer_id"] == second.json()["customer_id"]


async def test_lookup_and_search(client: httpx.AsyncClient, tenant: TenantHandle) -> None:
    maria = await identify(
        client,
        tenant,
        ("email", "mj.fernandez@example.es"),
        ("phone", "+34644555666"),
        name="María José Fernández Ruiz",
    )
    await identify(client, tenant, ("email", "otro@example.es"), name="Jorge Núñez")
    by_identity = await client.get(
        "/v1/customers",
        params={"identity": "email:MJ.Fernandez@example.es"},
        headers=tenant.headers,
    )
    assert [c["id"] for c in by_identity.json()["items"]] == [maria["customer_id"]]
    for query in ("fern", "Fernández", "mj.fer", "644 555"):
        found = await client.get("/v1/customers", params={"q": query}, headers=tenant.headers)
        assert [c["id"] for c in found.json()["items"]] == [maria["customer_id"]], query
    bad = await client.get("/v1/customers", params={"identity": "nonsense"}, headers=tenant.headers)
    assert bad.status_code == 422


async def test_consents_keep_history_and_the_360_shows_the_current_state(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    customer = await identify(client, tenant, ("email", "consent@example.es"))
    url = f"/v1/customers/{customer['customer_id']}/consents"
    for granted in (True, False):
        response = await client.post(
            url,
            json={
                "purpose": "marketing",
                "channel_kind": "email",
                "granted": granted,
                "source": "web",
            },
            headers=tenant.headers,
        )
        assert response.status_code == 201
    await client.post(
        url,
        json={"purpose": "service", "channel_kind": "whatsapp", "granted": True},
        headers=tenant.headers,
    )
    history = (await client.get(url, headers=tenant.headers)).json()
    assert [c["granted"] for c in history] == [True, False, True]
    view = (
        await client.get(f"/v1/customers/{customer['customer_id']}", headers=tenant.headers)
    ).json()
    assert {(c["purpose"], c["channel_kind"], c["granted"]) for c in view["consents"]} == {
        ("marketing", "email", False),
        ("service", "whatsapp", True),
    }
    bad = await client.post(
        url,
        json={"purpose": "spam", "channel_kind": "email", "granted": True},
        headers=tenant.headers,
    )
    assert bad.status_code == 422
