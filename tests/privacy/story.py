"""One customer who used every part of Hilos, built through the public API as a shop would, and
the personal details of theirs that must be gone after an erasure."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import Text, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.channels.email_inbox import store_email
from hilos.channels.email_mime import parse_email
from hilos.channels.service import channel_info
from hilos.engagement import segments
from hilos.matching import service as matching
from hilos.models import metadata
from tests.commerce.orders_helpers import location, product, receive
from tests.conftest import TenantHandle, add_channel, inbound


@dataclass
class Person:
    """Amparo's details: distinctive enough that finding one anywhere means it was kept."""

    name: str = "Amparo Quintanilla"
    email: str = "amparo.quintanilla@example.es"
    phone: str = "+34600123456"
    secret_words: tuple[str, ...] = (
        "Quintanilla",
        "600123456",
        "12345678Z",
        "Calle del Pez",
        "tardaron muchísimo",
        "sofá cama",
        "Pez 12",
    )


@dataclass
class Story:
    customer_id: str
    merged_id: str
    person: Person
    conversation_id: str
    webchat_token: str
    channels: dict[str, str] = field(default_factory=dict)
    order_id: str = ""


async def ok(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200, 201)), response.text
    body: dict[str, Any] = response.json() if response.content else {}
    return body


async def drain(app: Any) -> None:
    """What the worker would do meanwhile: relay events, answer, route, refresh segments."""
    for _ in range(3):
        await app.state.worker.run_once()
        await segments.refresh_due(app.state.sessionmaker)


async def amparo(
    client: httpx.AsyncClient, tenant: TenantHandle, app: Any, person: Person | None = None
) -> Story:
    """Amparo writes on WhatsApp, by email and on the web chat, visits a store, browses the web
    shop, buys (shipped to her home), returns part of it, leaves a cart, answers a survey,
    reviews a product, gets a marketing message and joins a journey and a segment."""
    person = person or Person()
    headers = tenant.headers
    channels = {
        kind: await add_channel(client, tenant, kind)
        for kind in ("whatsapp", "email", "web_chat", "store")
    }
    # The shop's setup: SLA clocks on WhatsApp, the assistant, loyalty, a journey, a segment.
    await ok(
        await client.post(
            "/v1/sla-policies",
            json={"name": "WhatsApp", "channel_kinds": ["whatsapp"], "first_response_seconds": 600},
            headers=headers,
        )
    )
    await ok(
        await client.post(
            "/v1/knowledge/articles",
            json={
                "title": "Horario de las tiendas",
                "body": "Abrimos de lunes a sábado de 10:00 a 21:00.",
                "language": "es",
                "tags": ["horario"],
            },
            headers=headers,
        )
    )
    await ok(
        await client.put(
            "/v1/assistant/settings",
            json={"enabled": True, "channel_kinds": ["whatsapp"]},
            headers=headers,
        )
    )
    await ok(
        await client.put(
            "/v1/loyalty/program",
            json={"earn_rules": {"web": {"EUR": 1}}, "tiers": [], "redemption_values": {"EUR": 1}},
            headers=headers,
        )
    )
    journey = await ok(
        await client.post(
            "/v1/journeys",
            json={
                "name": "Gracias por tu compra",
                "trigger": {"event": "order.placed"},
                "definition": {
                    "start": "espera",
                    "steps": [
                        {"id": "espera", "type": "wait", "seconds": 86_400, "next": "marca"},
                        {"id": "marca", "type": "set_trait", "key": "k", "value": 1},
                    ],
                },
            },
            headers=headers,
        )
    )
    await ok(
        await client.patch(
            f"/v1/journeys/{journey['id']}", json={"status": "active"}, headers=headers
        )
    )
    template = await ok(
        await client.post(
            "/v1/templates",
            json={
                "name": "novedades",
                "purpose": "marketing",
                "variants": {"es": {"text": "Hola {{ customer.first_name }}, novedades"}},
            },
            headers=headers,
        )
    )

    await ok(
        await client.put(
            "/v1/surveys/settings",
            json={"csat": {"enabled": True, "delay_minutes": 0}},
            headers=headers,
        )
    )
    segment = await ok(
        await client.post(
            "/v1/segments",
            json={"name": "Sevilla", "rule": {"trait": "city", "op": "eq", "value": "Sevilla"}},
            headers=headers,
        )
    )
    # Before she gives her name: an anonymous visitor of the web shop (the oldest profile, which
    # survives when she is recognised at the end).
    anonymous_id = f"anon-{uuid.uuid4().hex}"
    browsing = await ok(
        await client.post(
            "/v1/page",
            json={
                "anonymousId": anonymous_id,
                "name": "Sofá cama Quintanilla",
                "properties": {"url": "https://tienda.example/sofa-cama?ref=Quintanilla"},
                "messageId": f"m-{uuid.uuid4().hex}",
            },
            headers=headers,
        )
    )
    identified = await ok(
        await client.post(
            "/v1/customers/identify",
            json={
                "identities": [
                    {"kind": "email", "value": person.email},
                    {"kind": "phone", "value": person.phone},
                    {"kind": "whatsapp", "value": person.phone},
                ],
                "name": person.name,
                "traits": {"city": "Sevilla", "dni": "12345678Z"},
            },
            headers=headers,
        )
    )
    customer_id = identified["customer_id"]
    await ok(
        await client.post(
            f"/v1/customers/{customer_id}/consents",
            json={
                "purpose": "marketing",
                "channel_kind": "email",
                "granted": True,
                "source": f"web form of {person.email}",
            },
            headers=headers,
        )
    )
    await ok(
        await client.post(
            "/v1/track",
            json={
                "userId": "cliente-4711",
                "event": "Product Viewed",
                "properties": {"product": "sofá cama", "email": person.email, "price": 499},
                "context": {
                    "ip": "203.0.113.7",
                    "userAgent": "Firefox",
                    "traits": {"email": person.email},
                },
                "messageId": f"m-{uuid.uuid4().hex}",
            },
            headers=headers,
        )
    )
    first = await ok(
        await inbound(
            client,
            tenant,
            channel_id=channels["whatsapp"],
            external_id=f"wa-{uuid.uuid4().hex}",
            kind="whatsapp",
            value=person.phone,
            name=person.name,
            text="Hola, soy Amparo Quintanilla, DNI 12345678Z. ¿A qué hora abrís?",
        )
    )
    # An email with her ID card attached: the file is kept by Hilos.
    mail = EmailMessage()
    mail["From"] = f"{person.name} <{person.email}>"
    mail["To"] = "atencion@tienda.example"
    mail["Subject"] = "Sofá cama para Calle del Pez 12"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.es>"
    mail.set_content("Os escribo desde Calle del Pez 12 por el sofá cama. Amparo Quintanilla")
    mail.add_attachment(
        b"%PDF-1.4 DNI 12345678Z Amparo Quintanilla",
        maintype="application",
        subtype="pdf",
        filename="dni-quintanilla.pdf",
    )
    await store_email(
        app.state.engine,
        app.state.sessionmaker,
        await channel_info(app.state.engine, channels["email"]),
        parse_email(mail.as_bytes()),
        wakeup=app.state.outbox_wakeup,
    )
    chat = await ok(
        await client.post(
            f"/webchat/{channels['web_chat']}/sessions",
            json={"name": person.name, "email": person.email},
        ),
        201,
    )
    await ok(
        await client.post(
            f"/webchat/{channels['web_chat']}/messages",
            json={"text": "¿Seguís teniendo el sofá cama?", "client_id": "c-1"},
            headers={"Authorization": f"Bearer {chat['token']}"},
        )
    )
    await ok(
        await client.post(
            f"/v1/stores/{channels['store']}/interactions",
            json={
                "kind": "visit",
                "customer": {"identities": [{"kind": "phone", "value": person.phone}]},
                "notes": "Amparo Quintanilla probó el sofá cama, vuelve el sábado",
                "external_id": f"tpv-{uuid.uuid4().hex}",
            },
            headers=headers,
        )
    )
    # The web shop: an order shipped to her home, part of it returned in a store, a new cart.
    await location(client, tenant, "ALM")
    await location(client, tenant, "SOL", "store", pickup=True)
    await product(client, tenant, "SOFA", prices={"web": 49900})
    await product(client, tenant, "COJIN", prices={"web": 1500})
    await receive(client, tenant, "SOFA", "ALM", 5)
    await receive(client, tenant, "COJIN", "ALM", 20)
    order = await ok(
        await client.post(
            "/v1/orders",
            json={
                "customer": {"identities": [{"kind": "email", "value": person.email}]},
                "channel": "web",
                "lines": [{"sku": "SOFA", "quantity": 1}, {"sku": "COJIN", "quantity": 2}],
                "idempotency_key": f"pedido-{uuid.uuid4().hex}",
                "ship_to": {"address": "Calle del Pez 12, Madrid", "lat": 40.42, "lon": -3.70},
            },
            headers=headers,
        )
    )
    for status in ("shipped", "delivered"):
        await ok(
            await client.post(
                f"/v1/orders/{order['id']}/status", json={"status": status}, headers=headers
            )
        )
    await ok(
        await client.post(
            "/v1/returns",
            json={
                "order_id": order["id"],
                "lines": [{"sku": "COJIN", "quantity": 1}],
                "location": "SOL",
                "reason": "A Amparo Quintanilla no le gustó el color",
            },
            headers=headers,
        )
    )
    await ok(
        await client.put(
            "/v1/carts/lines",
            json={
                "customer": {"identities": [{"kind": "email", "value": person.email}]},
                "channel": "web",
                "sku": "COJIN",
                "quantity": 3,
            },
            headers=headers,
        )
    )
    await ok(
        await client.post(
            "/v1/surveys/responses",
            json={
                "customer_id": customer_id,
                "kind": "csat",
                "score": 2,
                "channel": "whatsapp",
                "conversation_id": first["conversation_id"],
                "comment": "Las respuestas tardaron muchísimo",
            },
            headers=headers,
        )
    )
    await ok(
        await client.post(
            "/v1/reviews",
            json={
                "source": "web",
                "external_id": f"r-{uuid.uuid4().hex}",
                "sku": "SOFA",
                "rating": 1,
                "text": "Horrible, el sofá cama llegó roto y tardaron muchísimo en contestar",
                "language": "es",
                "author": "Amparo Quintanilla",
                "customer": {"identities": [{"kind": "email", "value": person.email}]},
            },
            headers=headers,
        )
    )
    await ok(
        await client.post(
            "/v1/engagement/sends",
            json={
                "customer_id": customer_id,
                "template_id": template["id"],
                "idempotency_key": f"novedades-{uuid.uuid4().hex}",
            },
            headers=headers,
        )
    )
    # The conversation ends (a CSAT invitation follows) and a campaign goes to her segment.
    await ok(
        await client.patch(
            f"/v1/conversations/{first['conversation_id']}",
            json={"status": "resolved"},
            headers=headers,
        )
    )
    await drain(app)
    campaign = await ok(
        await client.post(
            "/v1/campaigns",
            json={"name": "Rebajas", "segment_id": segment["id"], "template_id": template["id"]},
            headers=headers,
        )
    )
    await ok(
        await client.post(f"/v1/campaigns/{campaign['id']}/schedule", json={}, headers=headers)
    )
    # The web shop knows her name and postcode as well: the matching check (run here as the
    # worker's stage runs it) suggests the two profiles are one person before her login says so.
    for profile_id in (customer_id, browsing["customer_id"]):
        await ok(
            await client.patch(
                f"/v1/customers/{profile_id}",
                json={"name": person.name, "traits": {"postcode": "28004"}},
                headers=headers,
            )
        )
    async with app.state.sessionmaker() as session, session.begin():
        await matching.check_profiles(
            session, tenant.context, [customer_id, browsing["customer_id"]]
        )
    # She logs in to the web shop from the browser she used anonymously: both profiles merge.
    recognised = await ok(
        await client.post(
            "/v1/identify",
            json={
                "anonymousId": anonymous_id,
                "traits": {"email": person.email},
                "messageId": f"m-{uuid.uuid4().hex}",
            },
            headers=headers,
        )
    )
    assert recognised["customer_id"] == browsing["customer_id"] != customer_id
    await drain(app)
    return Story(
        customer_id=recognised["customer_id"],
        merged_id=customer_id,
        person=person,
        conversation_id=first["conversation_id"],
        webchat_token=chat["token"],
        channels=channels,
        order_id=order["id"],
    )


async def tables_mentioning(
    sessionmaker: async_sessionmaker[AsyncSession], tenant_id: str, words: tuple[str, ...]
) -> dict[str, list[str]]:
    """The tables of the tenant whose rows still hold one of ``words``, and which words.

    Every column of every table is read as text, so nothing escapes because it is in a JSON
    document or a column nobody thought of."""
    found: dict[str, list[str]] = {}
    async with sessionmaker() as session:
        for name, table in metadata.tables.items():
            owner = table.c.get("tenant_id")
            if owner is None:
                owner = table.c.id if name == "tenants" else None
            if owner is None:
                continue
            for word in words:
                text_columns = [
                    func.lower(cast(column, Text)) for column in table.c if not _binary(column)
                ]
                hit = await session.scalar(
                    select(func.count())
                    .select_from(table)
                    .where(
                        owner == tenant_id,
                        or_(*(column.contains(word.lower()) for column in text_columns)),
                    )
                )
                if hit:
                    found.setdefault(name, []).append(word)
    return found


def _binary(column: Any) -> bool:
    try:
        return bool(column.type.python_type is bytes)
    except NotImplementedError:
        return False
