"""``POST /v1/customers/{id}/erase``: the person's data is gone from every table, the shop's
figures are not; erasing twice changes nothing; the person can come back as someone new."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels.email_inbox import store_email
from hilos.channels.email_mime import parse_email
from hilos.channels.service import channel_info
from hilos.core.clock import now
from hilos.models import metadata
from hilos.privacy.erase import redact
from tests.conftest import TenantHandle, add_channel
from tests.privacy.story import amparo, tables_mentioning


async def kpis(client: httpx.AsyncClient, tenant: TenantHandle) -> dict[str, Any]:
    today = now().date()
    response = await client.get(
        "/v1/kpis",
        params={"from": (today - timedelta(days=30)).isoformat(), "to": today.isoformat()},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    figures: dict[str, Any] = response.json()
    # When the parity report was computed: the moment of the call, not a figure.
    figures["price_parity"].pop("at", None)
    return figures


async def summary(client: httpx.AsyncClient, tenant: TenantHandle, path: str) -> dict[str, Any]:
    today = now().date()
    response = await client.get(
        path,
        params={
            "from": (today - timedelta(days=30)).isoformat(),
            "to": (today + timedelta(days=1)).isoformat(),
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def snapshot(sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str) -> str:
    """A digest of every row the tenant has, in every table."""
    digest = hashlib.sha256()
    async with sessionmaker() as session:
        for name in sorted(metadata.tables):
            table = metadata.tables[name]
            owner = table.c.get("tenant_id")
            if owner is None:
                continue
            rows = (await session.execute(select(table).where(owner == tenant_id))).all()
            for row in sorted(repr(tuple(row)) for row in rows):
                digest.update(f"{name}:{row}\n".encode())
    return digest.hexdigest()


async def rosa(client: httpx.AsyncClient, tenant: TenantHandle) -> str:
    """A customer with only an email and a name."""
    identified = await client.post(
        "/v1/customers/identify",
        json={"identities": [{"kind": "email", "value": "rosa@example.es"}], "name": "Rosa"},
        headers=tenant.headers,
    )
    assert identified.status_code == 200, identified.text
    customer_id: str = identified.json()["customer_id"]
    return customer_id


async def test_erasure_removes_the_person_everywhere_and_keeps_every_figure(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    story = await amparo(client, tenant, app)
    words = story.person.secret_words
    before = await tables_mentioning(sessionmaker, tenant.id, words)
    # The story put her details in many places; the scan sees them.
    assert {"customers", "identities", "messages", "orders", "reviews", "tasks"} <= set(before)
    figures = await kpis(client, tenant)
    reviews = await summary(client, tenant, "/v1/reviews/summary")
    sentiment = await summary(client, tenant, "/v1/sentiment/summary")
    assert reviews["count"] == 1
    assert sentiment["messages"]["count"] == 3
    # Her sales, her contacts across channels, her visit and her answer count in the figures.
    assert figures["average_order_value"]["EUR"]["orders"] == 1
    assert figures["multichannel"]["multichannel"] == 1
    assert figures["conversion"]["sessions"]["sessions"] == 1
    assert figures["channel_switches"]["switches"] == 2
    assert figures["surveys"]["csat"]["answers"] == 1

    response = await client.post(
        f"/v1/customers/{story.merged_id}/erase",
        json={"reason": "Solicitud RGPD, ticket 881"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    erased = response.json()
    assert erased["already_erased"] is False
    # The merged-away id leads to the survivor, and both profiles are erased.
    assert erased["customer_id"] == story.customer_id
    assert set(erased["customer_ids"]) == {story.customer_id, story.merged_id}
    assert erased["rows"]["identities"] == 6
    assert erased["rows"]["stored_files"] == 1

    assert await tables_mentioning(sessionmaker, tenant.id, words) == {}
    assert await kpis(client, tenant) == figures
    assert await summary(client, tenant, "/v1/reviews/summary") == reviews
    assert await summary(client, tenant, "/v1/sentiment/summary") == sentiment

    profile = await client.get(f"/v1/customers/{story.customer_id}", headers=tenant.headers)
    assert profile.status_code == 200, profile.text
    shown = profile.json()
    assert (shown["name"], shown["identities"], shown["traits"]) == (None, [], {})
    texts = [item["text"] for item in shown["timeline"] if item["type"] == "message"]
    assert texts
    assert set(texts) <= {"[erased]", ""}
    # The consent she had given is withdrawn, and says why.
    assert [(c["granted"], c["source"]) for c in shown["consents"]] == [(False, "erasure")]
    for query in (
        {"q": "Quintanilla"},
        {"q": "Amparo"},
        {"identity": f"email:{story.person.email}"},
    ):
        found = await client.get("/v1/customers", params=query, headers=tenant.headers)
        assert found.json()["items"] == [], query
    # The web chat's browser no longer reaches her.
    messages = await client.get(
        f"/webchat/{story.channels['web_chat']}/messages",
        headers={"Authorization": f"Bearer {story.webchat_token}"},
    )
    assert messages.status_code == 401

    # The export now shows an erased, anonymous profile.
    exported = (
        await client.get(f"/v1/customers/{story.customer_id}/export", headers=tenant.headers)
    ).json()
    assert exported["erased_at"] == erased["erased_at"]
    assert exported["data"]["identities"] == []
    assert exported["data"]["stored_files"] == []
    assert {m["text"] for m in exported["data"]["messages"]} <= {"[erased]", ""}
    # Nothing reaches out to her again: her journey ended, what the figures count stayed.
    [run] = exported["data"]["journey_runs"]
    assert (run["status"], run["exit_reason"]) == ("exited", "customer_erased")
    assert [o["total"] for o in exported["data"]["orders"]] == [52900]
    assert exported["data"]["orders"][0]["ship_to"] is None
    assert [r["score"] for r in exported["data"]["survey_responses"]] == [2]
    # Her review stays in the shop's ratings, no longer linked to her.
    assert exported["data"]["reviews"] == []

    # She comes back: a new customer, not the erased one.
    again = await client.post(
        "/v1/customers/identify",
        json={"identities": [{"kind": "email", "value": story.person.email}], "name": "Amparo"},
        headers=tenant.headers,
    )
    assert again.status_code == 200, again.text
    assert again.json()["created"] is True
    assert again.json()["customer_id"] not in erased["customer_ids"]


async def test_erasing_twice_changes_nothing_the_second_time(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    story = await amparo(client, tenant, app)
    first = await client.post(f"/v1/customers/{story.customer_id}/erase", headers=tenant.headers)
    assert first.status_code == 200, first.text
    stored = await snapshot(sessionmaker, tenant.id)

    second = await client.post(
        f"/v1/customers/{story.customer_id}/erase", json={}, headers=tenant.headers
    )
    assert second.status_code == 200, second.text
    assert second.json() == {**first.json(), "already_erased": True}
    assert await snapshot(sessionmaker, tenant.id) == stored
    log = await client.get(
        "/v1/audit-log", params={"action": "customer.erased"}, headers=tenant.headers
    )
    [entry] = log.json()["items"]
    assert entry["subject_id"] == story.customer_id
    assert entry["request_id"] == first.headers["x-request-id"]
    assert entry["actor"]["type"] == "api_key"
    assert entry["details"]["customer_ids"] == first.json()["customer_ids"]
    assert story.person.email not in str(entry)


async def test_an_erased_profile_cannot_be_given_a_name_or_traits_again(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    app: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    story = await amparo(client, tenant, app)
    erased = await client.post(f"/v1/customers/{story.customer_id}/erase", headers=tenant.headers)
    assert erased.status_code == 200, erased.text
    stored = await snapshot(sessionmaker, tenant.id)

    for change in ({"name": "Amparo Ruiz"}, {"traits": {"city": "Valencia"}}):
        response = await client.patch(
            f"/v1/customers/{story.customer_id}", json=change, headers=tenant.headers
        )
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "customer_erased"
    assert await snapshot(sessionmaker, tenant.id) == stored

    # Someone not erased is still edited as before.
    renamed = await client.patch(
        f"/v1/customers/{await rosa(client, tenant)}",
        json={"name": "Rosa Gil"},
        headers=tenant.headers,
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "Rosa Gil"


async def test_another_tenants_customer_is_not_found_and_not_touched(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    customer_id = await rosa(client, tenant)
    other: TenantHandle = await make_tenant("Otra tienda")
    for method, path in (
        ("POST", f"/v1/customers/{customer_id}/erase"),
        ("GET", f"/v1/customers/{customer_id}/export"),
        ("POST", "/v1/customers/0000000000000000000000000000dead/erase"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    still = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    assert still.json()["name"] == "Rosa"


async def test_only_admins_export_erase_or_read_the_log(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    customer_id = await rosa(client, tenant)
    for role in ("agent", "supervisor"):
        created = await client.post(
            "/v1/api-keys", json={"name": role, "role": role}, headers=tenant.headers
        )
        headers = {"Authorization": f"Bearer {created.json()['key']}"}
        for method, path in (
            ("POST", f"/v1/customers/{customer_id}/erase"),
            ("GET", f"/v1/customers/{customer_id}/export"),
            ("GET", "/v1/audit-log"),
        ):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 403, (role, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
    still = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    assert still.json()["name"] == "Rosa"


async def test_a_reason_longer_than_allowed_is_refused_and_nothing_is_erased(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    customer_id = await rosa(client, tenant)
    response = await client.post(
        f"/v1/customers/{customer_id}/erase", json={"reason": "x" * 501}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "reason"
    still = await client.get(f"/v1/customers/{customer_id}", headers=tenant.headers)
    assert still.json()["name"] == "Rosa"


def test_redaction_keeps_codes_ids_times_and_numbers_and_nothing_else() -> None:
    hilos_id = "01a2048da96657b640af18aea2f6d8d4"
    data = {
        "status": "ended",
        "duration_seconds": 312.5,
        "automated": True,
        "customer_id": hilos_id,
        "caller_id": "+34600123456",
        "answered_at": "2026-11-22T10:00:00+00:00",
        "recording_url": "https://api.twilio.com/rec/RE1",
        "channel": "store:MAD01",
        "reason": "Amparo pidió que la llamáramos",
        "events": [{"event": "ringing", "at": "2026-11-22T09:59:00+00:00"}],
        "email": {"subject": "Hola", "headers": {"From": "Amparo <a@example.es>"}},
        "lines": [{"sku": "SOFA", "quantity": 1}],
    }
    assert redact(data) == {
        "status": "ended",
        "duration_seconds": 312.5,
        "automated": True,
        "customer_id": hilos_id,
        "caller_id": "[erased]",
        "answered_at": "2026-11-22T10:00:00+00:00",
        "recording_url": "[erased]",
        "channel": "store:MAD01",
        "reason": "[erased]",
        "events": [{"event": "ringing", "at": "2026-11-22T09:59:00+00:00"}],
        "email": {"subject": "[erased]", "headers": {"From": "[erased]"}},
        "lines": [{"sku": "SOFA", "quantity": 1}],
    }
    assert redact(None) is None
    assert redact("free text") == "[erased]"


async def email_with_file(app: Any, channel_id: str, sender: str, content: bytes) -> None:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = "atencion@tienda.example"
    mail["Subject"] = "Factura"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.es>"
    mail.set_content("Os adjunto la factura.")
    mail.add_attachment(content, maintype="application", subtype="pdf", filename="factura.pdf")
    await store_email(
        app.state.engine,
        app.state.sessionmaker,
        await channel_info(app.state.engine, channel_id),
        parse_email(mail.as_bytes()),
        wakeup=app.state.outbox_wakeup,
    )


async def test_a_file_another_customer_sent_too_is_kept(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any
) -> None:
    """A tenant keeps identical bytes once: erasing one sender must not take the other's file."""
    channel = await add_channel(client, tenant, "email")
    await email_with_file(app, channel, "rosa@example.es", b"%PDF-1.4 the same invoice")
    await email_with_file(app, channel, "pablo@example.es", b"%PDF-1.4 the same invoice")
    await email_with_file(app, channel, "rosa@example.es", b"%PDF-1.4 only hers")
    found = await client.get(
        "/v1/customers", params={"identity": "email:rosa@example.es"}, headers=tenant.headers
    )
    [rosa] = found.json()["items"]
    exported = await client.get(f"/v1/customers/{rosa['id']}/export", headers=tenant.headers)
    files = {f["sha256"]: f["url"] for f in exported.json()["data"]["stored_files"]}
    assert len(files) == 2

    erased = await client.post(f"/v1/customers/{rosa['id']}/erase", headers=tenant.headers)
    assert erased.json()["rows"]["stored_files"] == 1
    shared = hashlib.sha256(b"%PDF-1.4 the same invoice").hexdigest()
    for digest, url in files.items():
        response = await client.get(url, headers=tenant.headers)
        assert response.status_code == (200 if digest == shared else 404), digest
