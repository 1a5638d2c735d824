"""A business with one of everything, built through the API, for the security sweep.

``build_business`` creates, in one tenant, one object of each kind a route of the API names by
id (a customer, a conversation and its message, channels, an order and its return, a cart, a
reservation, a journey and its run, a campaign, a queue, an agent and their offer, a webhook
endpoint and a delivery, a task, a review, a file...) and answers them by the name of the path
parameter that carries them (``customer_id``, ``order_id``...). The sweep then calls every route
with these ids, so a route that forgets its tenant scope finds a real row of this business.

Everything is made through the public API, the way an integrator would; the few things only a
background step makes (the routing offer, the journey run, the outbound webhook delivery) are
made by running that step's own code once, and an email attachment is stored by the same code
the SMTP server uses. No step sends anything outside this process: the webhook endpoint listens
on the loopback discard port and nothing here delivers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from hilos.channels.email_inbox import store_files
from hilos.channels.email_mime import MailFile
from hilos.core.clock import now
from hilos.core.outbox import relay
from hilos.engagement import journeys
from hilos.matching import service as matching
from hilos.routing import service as routing
from tests.channels import fake_twilio, fake_whatsapp
from tests.conftest import TenantHandle

PASSWORD = "una-clave-bastante-larga"
VOICE_TOKEN = "pbx-token-for-the-sweep"
# Nothing listens on the discard port: a delivery attempt by another test's worker pass fails
# at once, on this machine.
LOOPBACK_RECEIVER = "http://127.0.0.1:9/hilos-sweep"


# Path parameters that are not named after the world's id for them.
PARAMETER_SOURCES: dict[str, dict[str, str]] = {
    "/v1/stores/{channel_id}/interactions": {"channel_id": "store_channel_id"},
}


@dataclass
class Business:
    tenant: TenantHandle
    # An agent-role API key of the business.
    agent_headers: dict[str, str]
    # Path parameter name -> the id of an object of this business.
    ids: dict[str, str] = field(default_factory=dict)
    # Console users of the business (emails), by role.
    users: dict[str, str] = field(default_factory=dict)

    def id_for(self, path: str, parameter: str) -> str | None:
        """The id of this business that ``{parameter}`` of route ``path`` names, if any."""
        return self.ids.get(PARAMETER_SOURCES.get(path, {}).get(parameter, parameter))


async def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), (
        response.request.method,
        str(response.request.url),
        response.text,
    )
    return response.json() if response.content else None


async def build_business(client: httpx.AsyncClient, app: Any, tenant: TenantHandle) -> Business:
    h = tenant.headers
    ids: dict[str, str] = {}

    async def post(path: str, body: Any) -> Any:
        return await _ok(await client.post(path, json=body, headers=h))

    async def put(path: str, body: Any) -> Any:
        return await _ok(await client.put(path, json=body, headers=h))

    agent_key = await post("/v1/api-keys", {"name": "caja 2", "role": "agent"})
    ids["key_id"] = agent_key["id"]
    agent_headers = {"Authorization": f"Bearer {agent_key['key']}"}

    users: dict[str, str] = {}
    for role in ("agent", "supervisor", "admin"):
        email = f"{role}-{tenant.id.lower()}@tienda-prueba.es"
        await post(
            "/v1/users",
            {"email": email, "name": f"Persona {role}", "password": PASSWORD, "role": role},
        )
        users[role] = email

    whatsapp = await post(
        "/v1/channels", {"kind": "whatsapp", "name": "WhatsApp", "config": fake_whatsapp.CONFIG}
    )
    ids["channel_id"] = whatsapp["id"]
    store = await post("/v1/channels", {"kind": "store", "name": "Tienda Sol"})
    ids["store_channel_id"] = store["id"]
    sms = await post(
        "/v1/channels", {"kind": "sms", "name": "SMS", "config": fake_twilio.SMS_CONFIG}
    )
    ids["sms_channel_id"] = sms["id"]
    voice = await post(
        "/v1/channels",
        {"kind": "voice", "name": "Centralita", "config": {"auth_token": VOICE_TOKEN}},
    )
    ids["voice_channel_id"] = voice["id"]

    # A queue and an online agent first, so the first conversation is offered to them.
    queue = await post(
        "/v1/queues",
        {"name": "Soporte", "skills": ["es"], "channel_kinds": ["whatsapp"], "auto_assign": False},
    )
    ids["queue_id"] = queue["id"]
    agent = await post(
        "/v1/agents",
        {
            "email": f"agente-{tenant.id.lower()}@tienda-prueba.es",
            "name": "Ana Agente",
            "skills": {"es": 2},
            "password": PASSWORD,
        },
    )
    ids["agent_id"] = agent["id"]
    await put(f"/v1/agents/{agent['id']}/presence", {"status": "online"})
    await post(f"/v1/queues/{queue['id']}/members", {"agent_id": agent["id"]})

    received = await post(
        "/v1/messages/inbound",
        {
            "channel_id": whatsapp["id"],
            "external_id": f"wamid.sweep-{tenant.id}",
            "sender": {"kind": "whatsapp", "value": "34612000111", "name": "Lucía"},
            "text": "Hola, ¿tenéis la camisa en talla M?",
        },
    )
    ids["conversation_id"] = received["conversation_id"]
    ids["message_id"] = received["message_id"]
    ids["customer_id"] = received["customer_id"]
    await post(
        "/v1/customers/identify",
        {"identities": [{"kind": "email", "value": f"lucia-{tenant.id.lower()}@example.org"}]},
    )

    blocked = await post("/v1/blocked-values", {"kind": "phone", "value": "+34910000001"})
    ids["blocked_id"] = blocked["id"]
    canned = await post(
        "/v1/canned-responses",
        {"shortcut": "hola", "title": "Saludo", "text": "Hola {{ customer.first_name }}"},
    )
    ids["response_id"] = canned["id"]

    # Commerce: a warehouse, a store, a product with a price and stock.
    warehouse = await post("/v1/locations", {"code": "ALM", "name": "Almacén", "kind": "warehouse"})
    ids["location_id"] = warehouse["id"]
    await post(
        "/v1/locations", {"code": "SOL", "name": "Tienda Sol", "kind": "store", "pickup": True}
    )
    product = await post("/v1/products", {"sku": "CAMISA", "name": "Camisa"})
    ids["product_id"] = product["id"]
    price = await put(
        "/v1/prices", {"sku": "CAMISA", "channel": "web", "amount": 2500, "currency": "EUR"}
    )
    ids["price_id"] = price["id"]
    await post(
        "/v1/stock/movements",
        {
            "sku": "CAMISA",
            "location": "ALM",
            "quantity": 20,
            "reason": "receipt",
            "idempotency_key": "sweep-receipt",
        },
    )
    reservation = await post(
        "/v1/reservations", {"sku": "CAMISA", "location": "ALM", "quantity": 1, "ttl_seconds": 3600}
    )
    ids["reservation_id"] = reservation["id"]
    cart = await put(
        "/v1/carts/lines",
        {"customer_id": ids["customer_id"], "channel": "web", "sku": "CAMISA", "quantity": 1},
    )
    ids["cart_id"] = cart["id"]

    # Engagement: a template, a segment, a campaign not yet scheduled, and a journey that
    # starts when an order is placed (the order below starts its run).
    template = await post(
        "/v1/templates",
        {
            "name": "aviso",
            "purpose": "marketing",
            "variants": {"es": {"text": "Hola {{ customer.first_name }}"}},
        },
    )
    ids["template_id"] = template["id"]
    segment = await post("/v1/segments", {"name": "Todos", "rule": {"all": []}})
    ids["segment_id"] = segment["id"]
    campaign = await post(
        "/v1/campaigns",
        {"name": "Rebajas", "segment_id": segment["id"], "template_id": template["id"]},
    )
    ids["campaign_id"] = campaign["id"]
    journey = await post(
        "/v1/journeys",
        {
            "name": "Gracias por comprar",
            "trigger": {"event": "order.placed"},
            "definition": {
                "start": "tag",
                "steps": [{"id": "tag", "type": "add_tag", "tag": "comprador"}],
            },
        },
    )
    ids["journey_id"] = journey["id"]
    await _ok(
        await client.patch(f"/v1/journeys/{journey['id']}", json={"status": "active"}, headers=h)
    )
    endpoint = await post(
        "/v1/webhook-endpoints", {"url": LOOPBACK_RECEIVER, "topics": ["order.placed"]}
    )
    ids["endpoint_id"] = endpoint["id"]

    order = await post(
        "/v1/orders",
        {
            "customer": {"id": ids["customer_id"]},
            "channel": "web",
            "lines": [{"sku": "CAMISA", "quantity": 2}],
            "idempotency_key": "sweep-order",
        },
    )
    ids["order_id"] = order["id"]
    await post(f"/v1/orders/{order['id']}/status", {"status": "shipped"})
    returned = await post(
        "/v1/returns",
        {"order_id": order["id"], "lines": [{"sku": "CAMISA", "quantity": 1}], "location": "ALM"},
    )
    ids["return_id"] = returned["id"]

    article = await post(
        "/v1/knowledge/articles",
        {"title": "Horario", "body": "Abrimos de 10 a 21 h.", "language": "es"},
    )
    ids["article_id"] = article["id"]
    policy = await post("/v1/sla-policies", {"name": "Estándar", "first_response_seconds": 3600})
    ids["policy_id"] = policy["id"]
    review = await post(
        "/v1/reviews",
        {"source": "google", "external_id": "sweep-1", "text": "Muy buena atención", "rating": 5},
    )
    ids["review_id"] = review["id"]
    mention = await post(
        "/v1/mentions",
        {
            "network": "x",
            "external_id": "sweep-1",
            "author": "@lucia",
            "text": "Me encanta la tienda",
            "url": "https://social.example/sweep-1",
            "created_at": (now() - timedelta(hours=1)).isoformat(),
        },
    )
    ids["mention_id"] = mention["id"]

    # A missed call opens a call-back task.
    call = {
        "call_id": "sweep-call",
        "event": "missed",
        "from": "+34600000009",
        "occurred_at": (now() - timedelta(minutes=5)).isoformat(),
    }
    await _ok(
        await client.post(
            f"/webhooks/voice/{voice['id']}",
            content=json.dumps(call).encode(),
            headers={"Authorization": f"Bearer {VOICE_TOKEN}", "Content-Type": "application/json"},
        )
    )
    tasks = await _ok(await client.get("/v1/tasks", headers=h))
    ids["task_id"] = tasks["items"][0]["id"]

    # What background steps make: the offer, the journey run, the webhook delivery.
    sessionmaker = app.state.sessionmaker
    while await relay(sessionmaker, app.state.bus):
        pass
    await routing.run_due(sessionmaker)
    await journeys.run_due(sessionmaker)
    offers = await _ok(await client.get("/v1/offers", headers=h))
    ids["offer_id"] = offers["items"][0]["id"] if isinstance(offers, dict) else offers[0]["id"]
    runs = await _ok(await client.get(f"/v1/journeys/{journey['id']}/runs", headers=h))
    ids["run_id"] = (runs["items"] if isinstance(runs, dict) else runs)[0]["id"]
    deliveries = await _ok(
        await client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries", headers=h)
    )
    ids["delivery_id"] = deliveries["items"][0]["id"]

    # An email attachment, stored as the SMTP server stores one.
    async with sessionmaker() as session, session.begin():
        [attachment] = await store_files(
            session,
            tenant.context,
            [MailFile("factura.pdf", "application/pdf", b"%PDF-1.4 factura de la tienda")],
        )
    ids["file_id"] = attachment["url"].rsplit("/", 1)[1]

    # Two profiles that look like one person, checked as the worker's matching stage does.
    lookalikes = [
        await post(
            "/v1/customers/identify",
            {
                "identities": [{"kind": "external", "value": external}],
                "name": name,
                "traits": {"birth_date": "1980-05-17", "postcode": "28001", "city": "Madrid"},
            },
        )
        for external, name in (("crm-1", "María José Fernández"), ("web-1", "Mª José Fernandez"))
    ]
    async with sessionmaker() as session, session.begin():
        await matching.check_profiles(
            session, tenant.context, [found["customer_id"] for found in lookalikes]
        )
    suggestions = await _ok(await client.get("/v1/match-suggestions", headers=h))
    ids["suggestion_id"] = suggestions["items"][0]["id"]

    return Business(tenant=tenant, agent_headers=agent_headers, ids=ids, users=users)
