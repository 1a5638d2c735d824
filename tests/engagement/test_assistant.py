"""The virtual assistant, in Spanish and English: answers from the knowledge base, the status of
the customer's own orders (and nobody else's), a store's stock and today's hours; hands off to a
person on request, when unsure or when the customer is upset, with a summary for the agent;
answers only where it is switched on, once per message, durably, and never after a hand-off or
an agent's reply."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from babel.messages.extract import extract_from_file
from sqlalchemy import func, select

from hilos.commerce.orders import order_number
from hilos.core import clock
from hilos.core.ids import new_id
from hilos.core.models import OutboxEvent
from hilos.core.outbox import relay
from hilos.engagement import assistant
from hilos.engagement.assistant_models import AssistantTurn
from hilos.web.i18n import translations
from hilos.worker import Worker
from tests.conftest import TenantHandle, add_channel, inbound
from tests.routing.helpers import create_agent, create_queue, offers

# A Wednesday, 10:00 in Madrid.
WEDNESDAY = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
HOURS = {"wed": [["10:00", "14:00"], ["17:00", "21:00"]], "sun": []}

RETURNS_ES = "Tienes 30 días de plazo para devolver tu compra en cualquier tienda o por correo."
RETURNS_EN = "You have 30 days to return your purchase in any store or by post."


@pytest.fixture
def wednesday() -> Iterator[datetime]:
    clock.set_now(lambda: WEDNESDAY)
    yield WEDNESDAY
    clock.set_now(None)


# --- helpers ------------------------------------------------------------------------------------


async def turn_on(client: httpx.AsyncClient, tenant: TenantHandle, **fields: Any) -> dict[str, Any]:
    response = await client.put(
        "/v1/assistant/settings", json={"enabled": True, **fields}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def article(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    title: str,
    body: str,
    language: str = "es",
    tags: list[str] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/knowledge/articles",
        json={"title": title, "body": body, "language": language, "tags": tags or []},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def write(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    channel_id: str,
    text: str,
    *,
    external_id: str,
    sender: str = "+34600111222",
    kind: str = "whatsapp",
) -> str:
    response = await inbound(
        client,
        tenant,
        channel_id=channel_id,
        external_id=external_id,
        kind=kind,
        value=sender,
        text=text,
    )
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


async def messages(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/v1/conversations/{conversation_id}/messages", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def replies(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> list[str]:
    """The texts the assistant sent the customer, in order."""
    return [
        m["text"]
        for m in await messages(client, tenant, conversation_id)
        if m["direction"] == "outbound"
        and (m["data"] or {}).get("automated", {}).get("by") == "assistant"
    ]


async def notes(client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str) -> list[str]:
    return [
        m["text"]
        for m in await messages(client, tenant, conversation_id)
        if m["direction"] == "note"
    ]


async def assistant_view(
    client: httpx.AsyncClient, tenant: TenantHandle, conversation_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"/v1/assistant/conversations/{conversation_id}", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def ask(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    channel_id: str,
    text: str,
    *,
    external_id: str,
    **sender: str,
) -> tuple[str, str]:
    """The customer writes and the worker runs: (conversation id, the assistant's reply)."""
    conversation_id = await write(
        client, tenant, channel_id, text, external_id=external_id, **sender
    )
    await app.state.worker.run_once()
    said = await replies(client, tenant, conversation_id)
    return conversation_id, said[-1] if said else ""


async def store(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    code: str,
    name: str,
    *,
    kind: str = "store",
    hours: dict[str, Any] | None = None,
) -> None:
    body: dict[str, Any] = {"code": code, "name": name, "kind": kind}
    if kind == "store":
        body |= {"pickup": True, "opening_hours": hours or {}}
    response = await client.post("/v1/locations", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text


async def product(
    client: httpx.AsyncClient, tenant: TenantHandle, name: str, sizes: dict[str, str]
) -> None:
    """A product with one variant per size (``{sku: size}``), priced on the web."""
    variants = [{"sku": sku, "attributes": {"size": size}} for sku, size in sizes.items()]
    response = await client.post(
        "/v1/products", json={"name": name, "variants": variants}, headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    for sku in sizes:
        priced = await client.put(
            "/v1/prices",
            json={"sku": sku, "channel": "web", "amount": 1999, "currency": "EUR"},
            headers=tenant.headers,
        )
        assert priced.status_code in (200, 201), priced.text


async def receive(
    client: httpx.AsyncClient, tenant: TenantHandle, sku: str, at: str, quantity: int
) -> None:
    response = await client.post(
        "/v1/stock/movements",
        json={
            "sku": sku,
            "location": at,
            "quantity": quantity,
            "reason": "receipt",
            "idempotency_key": f"receipt-{sku}-{at}",
        },
        headers=tenant.headers,
    )
    assert response.status_code in (200, 201), response.text


async def order(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    *lines: dict[str, Any],
    phone: str,
    key: str,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/orders",
        json={
            "customer": {"identities": [{"kind": "whatsapp", "value": phone}]},
            "channel": "web",
            "lines": list(lines),
            "idempotency_key": key,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


# --- knowledge base -----------------------------------------------------------------------------


async def test_a_frequent_question_is_answered_from_the_knowledge_base_in_each_language(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    web = await add_channel(client, tenant, "web_chat")
    await article(client, tenant, "Devoluciones", RETURNS_ES, tags=["plazo", "devolución"])
    await article(client, tenant, "Envíos", "Los envíos son gratis a partir de 50 €.")
    await article(client, tenant, "Returns", RETURNS_EN, language="en", tags=["refund"])

    conversation_id, said = await ask(
        app, client, tenant, whatsapp, "¿Cuál es el plazo de devolución?", external_id="faq-es"
    )
    assert said == RETURNS_ES
    turn = (await assistant_view(client, tenant, conversation_id))["turns"][0]
    assert (turn["outcome"], turn["intent"], turn["language"]) == ("answered", "faq", "es")
    assert turn["confidence"] >= 0.5
    assert turn["details"]["article"] == "Devoluciones"

    _, said = await ask(
        app,
        client,
        tenant,
        web,
        "Hi! How many days do I have to return an item?",
        external_id="faq-en",
        kind="anonymous",
        sender="visitor-faq-en",
    )
    assert said == RETURNS_EN

    # What a supervisor sees when checking an article against a question.
    response = await client.get(
        "/v1/knowledge/search",
        params={"q": "quiero devolver unas zapatillas"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    found = response.json()
    assert found["language"] == "es"
    assert found["matches"][0]["title"] == "Devoluciones"
    assert found["answers"] is True


async def test_greetings_and_thanks_are_answered_briefly(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    _, said = await ask(app, client, tenant, whatsapp, "¡Hola, buenos días!", external_id="g-1")
    assert said.startswith("¡Hola! Soy el asistente virtual.")
    assert "«hablar con una persona»" in said
    _, said = await ask(app, client, tenant, whatsapp, "Muchas gracias", external_id="g-2")
    assert said == "¡De nada! ¿Algo más?"
    _, said = await ask(
        app, client, tenant, whatsapp, "Thanks!", external_id="g-3", sender="+447911123456"
    )
    assert said == "You're welcome! Anything else?"


# --- orders -------------------------------------------------------------------------------------


async def test_order_status_of_the_customers_own_order_in_spanish_and_english(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, wednesday: datetime
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await store(client, tenant, "ALM", "Almacén", kind="warehouse")
    await store(client, tenant, "SOL", "Tienda Sol", hours=HOURS)
    await product(client, tenant, "Gorra Clásica", {"GORRA-U": "U"})
    await receive(client, tenant, "GORRA-U", "ALM", 5)
    await receive(client, tenant, "GORRA-U", "SOL", 5)
    shipped = await order(
        client, tenant, {"sku": "GORRA-U", "quantity": 1}, phone="+34600111222", key="o-1"
    )
    pickup = await order(
        client,
        tenant,
        {"sku": "GORRA-U", "quantity": 1, "fulfilment": "pickup", "location": "SOL"},
        phone="+34600111222",
        key="o-2",
    )
    response = await client.post(
        f"/v1/orders/{shipped['id']}/status", json={"status": "shipped"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    first, second = order_number(shipped["id"]), order_number(pickup["id"])

    conversation_id, said = await ask(
        app, client, tenant, whatsapp, f"¿Dónde está mi pedido {first}?", external_id="o-es-1"
    )
    assert said == f"Tu pedido {first} está en camino."
    _, said = await ask(
        app, client, tenant, whatsapp, f"¿y el pedido {second.lower()}?", external_id="o-es-2"
    )
    assert said == (
        f"Hemos recibido tu pedido {second} y lo prepararemos en breve. Lo recogerás en Tienda "
        "Sol; te avisaremos cuando esté listo."
    )
    turns = (await assistant_view(client, tenant, conversation_id))["turns"]
    assert [t["intent"] for t in turns] == ["order_status", "order_status"]
    assert turns[1]["details"]["order_number"] == second

    response = await client.post(
        f"/v1/orders/{pickup['id']}/status",
        json={"status": "ready_for_pickup"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    _, said = await ask(
        app, client, tenant, whatsapp, f"Where is my order {second}?", external_id="o-en-1"
    )
    assert said == f"Your order {second} is ready for pickup at Tienda Sol."
    # The agent who takes over reads which order it is about.
    await ask(app, client, tenant, whatsapp, "Quiero hablar con un agente", external_id="o-h")
    [note] = await notes(client, tenant, conversation_id)
    assert f"Pedido: {second} (Listo para recoger)" in note
    assert f"– “¿Dónde está mi pedido {first}?” → “Tu pedido {first} está en camino.”" in note


async def test_without_a_number_the_customers_latest_order_is_told(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await store(client, tenant, "ALM", "Almacén", kind="warehouse")
    await product(client, tenant, "Gorra Clásica", {"GORRA-U": "U"})
    await receive(client, tenant, "GORRA-U", "ALM", 5)
    _, said = await ask(app, client, tenant, whatsapp, "where is my order?", external_id="l-0")
    assert said.startswith("I cannot find any order of yours.")
    await order(client, tenant, {"sku": "GORRA-U", "quantity": 1}, phone="+34600111222", key="l-1")
    latest = await order(
        client, tenant, {"sku": "GORRA-U", "quantity": 1}, phone="+34600111222", key="l-2"
    )
    number = order_number(latest["id"])
    _, said = await ask(
        app, client, tenant, whatsapp, "when will my order arrive?", external_id="l-3"
    )
    assert said == f"We have received your order {number} and will prepare it soon."


async def test_another_customers_order_number_is_answered_exactly_like_an_unknown_one(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await store(client, tenant, "ALM", "Almacén", kind="warehouse")
    await product(client, tenant, "Bufanda", {"BUF-U": "U"})
    await receive(client, tenant, "BUF-U", "ALM", 5)
    lucia = await order(
        client, tenant, {"sku": "BUF-U", "quantity": 1}, phone="+34600999888", key="lucia-1"
    )
    theirs = order_number(lucia["id"])
    unknown = "ZZ12ZZ34" if theirs != "ZZ12ZZ34" else "YY12YY34"

    _, about_theirs = await ask(
        app, client, tenant, whatsapp, f"¿Dónde está mi pedido {theirs}?", external_id="x-1"
    )
    _, about_unknown = await ask(
        app, client, tenant, whatsapp, f"¿Dónde está mi pedido {unknown}?", external_id="x-2"
    )
    assert about_theirs.replace(theirs, "N") == about_unknown.replace(unknown, "N")
    assert about_theirs == (
        f"No encuentro el pedido {theirs} entre tus pedidos. Revisa el número en la "
        "confirmación del pedido."
    )
    _, in_english = await ask(
        app, client, tenant, whatsapp, f"where is my order {theirs}", external_id="x-3"
    )
    assert theirs in in_english
    assert "cannot find" in in_english
    assert "placed" not in in_english


# --- stores -------------------------------------------------------------------------------------


async def test_store_stock_by_size_and_todays_hours_with_the_product_from_earlier_messages(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, wednesday: datetime
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await store(client, tenant, "MAD-SOL", "Tienda Sol", hours=HOURS)
    await store(client, tenant, "MAD-NORTE", "Tienda Norte", hours=HOURS)
    await product(client, tenant, "Camiseta Basic", {"CB-S": "S", "CB-M": "M", "CB-L": "L"})
    await product(client, tenant, "Sudadera Capucha", {"SC-M": "M"})
    await receive(client, tenant, "CB-S", "MAD-SOL", 1)
    await receive(client, tenant, "CB-M", "MAD-SOL", 3)
    await receive(client, tenant, "CB-L", "MAD-NORTE", 2)
    hours = "Hoy Tienda Sol abre en este horario: 10:00–14:00 y 17:00–21:00."

    conversation_id, said = await ask(
        app,
        client,
        tenant,
        whatsapp,
        "Hola, ¿tenéis la camiseta basic en la tienda de Sol?",
        external_id="s-1",
    )
    assert said == f"En Tienda Sol tenemos Camiseta Basic en: S: 1; M: 3; L: 0. {hours}"
    _, said = await ask(
        app, client, tenant, whatsapp, "¿tenéis la talla M en la tienda de Sol?", external_id="s-2"
    )
    assert said == f"Sí, en Tienda Sol quedan 3 unidades de Camiseta Basic (M). {hours}"
    _, said = await ask(app, client, tenant, whatsapp, "¿Y en talla L?", external_id="s-3")
    assert said == (
        "Ahora mismo no queda Camiseta Basic (L) en Tienda Sol. Lo encontrarás en Tienda Norte. "
        f"{hours}"
    )
    _, said = await ask(app, client, tenant, whatsapp, "¿Y la talla XL?", external_id="s-4")
    assert said.startswith("Camiseta Basic no está disponible en XL. Lo tenemos en: S, M y L.")
    _, said = await ask(
        app, client, tenant, whatsapp, "¿Qué horario tiene la tienda Norte?", external_id="s-5"
    )
    assert said == "Hoy Tienda Norte abre en este horario: 10:00–14:00 y 17:00–21:00."
    turns = (await assistant_view(client, tenant, conversation_id))["turns"]
    assert [t["intent"] for t in turns] == [
        "store_stock",
        "store_stock",
        "store_stock",
        "store_stock",
        "store_hours",
    ]
    assert (
        turns[1]["details"] | {"store": "MAD-SOL", "sku": "CB-M", "available": 3}
        == (turns[1]["details"])
    )


async def test_store_stock_in_english_and_the_questions_it_asks_back(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, wednesday: datetime
) -> None:
    await turn_on(client, tenant)
    web = await add_channel(client, tenant, "web_chat")
    await store(client, tenant, "MAD-C", "Madrid Centro", hours={"wed": [["10:00", "21:00"]]})
    await store(client, tenant, "BCN-1", "Barcelona Diagonal", hours={"wed": []})
    await product(client, tenant, "Zapatillas Runner", {"ZR-41": "41", "ZR-42": "42"})
    await receive(client, tenant, "ZR-42", "MAD-C", 2)
    visitor = {"kind": "anonymous", "sender": "visitor-runner"}

    _, said = await ask(
        app,
        client,
        tenant,
        web,
        "do you have size 42 of the Runner in the Madrid store?",
        external_id="e-1",
        **visitor,
    )
    assert said == (
        "Yes, Madrid Centro has 2 units of Zapatillas Runner (42). "
        "Today Madrid Centro is open 10:00–21:00."
    )
    _, said = await ask(
        app, client, tenant, web, "is the Barcelona store open today?", external_id="e-2", **visitor
    )
    assert said == "Today Barcelona Diagonal is closed."
    _, said = await ask(
        app,
        client,
        tenant,
        web,
        "do you have it in the Valencia store?",
        external_id="e-3",
        **visitor,
    )
    assert said == "Which store do you mean? Our stores: Madrid Centro or Barcelona Diagonal."


# --- hand-off -----------------------------------------------------------------------------------


async def test_asking_for_a_person_hands_off_with_a_summary_and_routing_offers_it(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    conversation_id, said = await ask(app, client, tenant, whatsapp, "Hola", external_id="h-1")
    assert said.startswith("¡Hola!")
    # A team starts working after the conversation began: the hand-off brings it to them.
    queue = await create_queue(client, tenant, "Atención")
    ana = await create_agent(client, tenant, "ana@tienda.es")

    _, said = await ask(
        app, client, tenant, whatsapp, "Quiero hablar con una persona", external_id="h-2"
    )
    assert said == "Te paso con una persona de nuestro equipo; te responderá por aquí."
    [note] = await notes(client, tenant, conversation_id)
    assert note.splitlines()[0] == (
        "Asistente virtual: conversación traspasada a una persona (el cliente ha pedido hablar "
        "con una persona)."
    )
    assert "El cliente escribió: «Quiero hablar con una persona»" in note
    assert "Intención: hablar con una persona" in note
    assert "Antes, el asistente respondió:" in note
    assert "– “Hola” → “¡Hola! Soy el asistente virtual." in note
    view = await assistant_view(client, tenant, conversation_id)
    assert view["handed_off"] is True
    assert view["handoff"]["reason"] == "requested"
    assert view["handoff"]["queue_id"] == queue["id"]
    assert [o["conversation_id"] for o in await offers(client, tenant) if o["agent_id"] == ana] == [
        conversation_id
    ]

    # From now on the people answer: the assistant stays quiet.
    _, said = await ask(app, client, tenant, whatsapp, "¿Dónde está mi pedido?", external_id="h-3")
    assert len(await replies(client, tenant, conversation_id)) == 2
    last = (await assistant_view(client, tenant, conversation_id))["turns"][-1]
    assert (last["outcome"], last["details"]["reason"]) == ("skipped", "handed_off")

    # Resolved, the conversation is the assistant's again when the customer comes back.
    response = await client.patch(
        f"/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    await app.state.worker.run_once()
    _, said = await ask(app, client, tenant, whatsapp, "Hola", external_id="h-4")
    assert said.startswith("¡Hola!")


async def test_an_english_request_for_a_human_on_web_chat_hands_off(
    app: Any, client: httpx.AsyncClient, make_tenant: Any
) -> None:
    tenant = await make_tenant(locale="en")
    await turn_on(client, tenant)
    web = await add_channel(client, tenant, "web_chat")
    conversation_id, said = await ask(
        app,
        client,
        tenant,
        web,
        "can I talk to a human please",
        external_id="en-h-1",
        kind="anonymous",
        sender="visitor-human",
    )
    assert said == "I am passing you to a person from our team; they will answer you here."
    [note] = await notes(client, tenant, conversation_id)
    assert note.splitlines()[0] == (
        "Virtual assistant: handed over to a person (the customer asked for a person)."
    )
    assert "The customer wrote: “can I talk to a human please”" in note
    assert "Language: English" in note


async def test_a_question_the_knowledge_base_does_not_cover_goes_to_a_person(
    app: Any, client: httpx.AsyncClient, make_tenant: Any
) -> None:
    tenant = await make_tenant(locale="en")
    await turn_on(client, tenant, confidence_threshold=0.5)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await article(client, tenant, "Returns", RETURNS_EN, language="en")
    await article(client, tenant, "Devoluciones", RETURNS_ES)

    conversation_id, said = await ask(
        app,
        client,
        tenant,
        whatsapp,
        "Do you repair bicycles in the returns area?",
        external_id="u-1",
    )
    assert said == "I am passing you to a person from our team; they will answer you here."
    [note] = await notes(client, tenant, conversation_id)
    assert "(the assistant was not sure of the answer)" in note
    assert "Closest article: Returns" in note
    assert "Confidence: " in note
    turn = (await assistant_view(client, tenant, conversation_id))["turns"][0]
    assert turn["confidence"] < 0.5
    assert turn["outcome"] == "handed_off"

    other, said = await ask(
        app,
        client,
        tenant,
        whatsapp,
        "¿Hacéis tatuajes?",
        external_id="u-2",
        sender="+34600333444",
    )
    assert said == "Te paso con una persona de nuestro equipo; te responderá por aquí."
    # The note is for the agents, in the business's language.
    [note] = await notes(client, tenant, other)
    assert "Language: Spanish" in note


async def test_an_upset_customer_is_handed_to_a_person_with_the_sentiment_in_the_note(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await article(client, tenant, "Envíos", "Los pedidos llegan en 24-48 horas.", tags=["pedido"])
    conversation_id, said = await ask(
        app,
        client,
        tenant,
        whatsapp,
        "¡Es una vergüenza! Sigo esperando el pedido y nadie me contesta",
        external_id="m-1",
    )
    assert said == "Te paso con una persona de nuestro equipo; te responderá por aquí."
    [note] = await notes(client, tenant, conversation_id)
    assert "(el cliente parece molesto)" in note
    assert "Sentimiento: -0." in note
    assert "(negativo)" in note

    other, said = await ask(
        app,
        client,
        tenant,
        whatsapp,
        "This is unacceptable, the worst service ever",
        external_id="m-2",
        sender="+447911123457",
    )
    assert said == "I am passing you to a person from our team; they will answer you here."
    view = await assistant_view(client, tenant, other)
    assert view["handoff"]["reason"] == "negative_sentiment"


# --- where and when it answers ------------------------------------------------------------------


async def test_it_answers_only_when_switched_on_and_only_on_the_chosen_channels(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    whatsapp = await add_channel(client, tenant, "whatsapp")
    telegram = await add_channel(client, tenant, "telegram")
    conversation_id, said = await ask(app, client, tenant, whatsapp, "Hola", external_id="d-1")
    assert said == ""  # off until someone turns it on

    settings = await turn_on(client, tenant, channel_kinds=["telegram"])
    assert settings == {
        "enabled": True,
        "channel_kinds": ["telegram"],
        "confidence_threshold": 0.5,
        "llm": None,
    }
    _, said = await ask(app, client, tenant, whatsapp, "Hola de nuevo", external_id="d-2")
    assert said == ""
    _, said = await ask(
        app, client, tenant, telegram, "Hola", external_id="d-3", kind="telegram", sender="4242"
    )
    assert said.startswith("¡Hola!")
    async with sessionmaker() as session:
        kinds = (
            await session.scalars(
                select(AssistantTurn.channel_kind).where(AssistantTurn.tenant_id == tenant.id)
            )
        ).all()
    assert kinds == ["telegram"]


async def test_it_stays_quiet_in_a_conversation_an_agent_has_or_answered(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    ana = await create_agent(client, tenant, "ana.quiet@tienda.es", online=False)
    conversation_id, said = await ask(app, client, tenant, whatsapp, "Hola", external_id="q-1")
    assert said.startswith("¡Hola!")

    response = await client.post(
        f"/v1/conversations/{conversation_id}/messages",
        json={"text": "Hola, soy Ana. ¿En qué te ayudo?", "author_user_id": ana},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    await ask(app, client, tenant, whatsapp, "Gracias Ana", external_id="q-2")
    assert len(await replies(client, tenant, conversation_id)) == 1

    response = await client.patch(
        f"/v1/conversations/{conversation_id}", json={"assignee_id": ana}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    await ask(app, client, tenant, whatsapp, "Hola", external_id="q-3")
    assert len(await replies(client, tenant, conversation_id)) == 1
    reasons = [
        t["details"].get("reason")
        for t in (await assistant_view(client, tenant, conversation_id))["turns"]
    ]
    assert reasons == [None, "agent_replied", "assigned_to_agent"]


async def test_a_message_is_answered_once_however_often_it_arrives_or_is_relayed(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    conversation_id = await write(client, tenant, whatsapp, "Hola", external_id="once-1")
    # The provider delivers it again.
    again = await write(client, tenant, whatsapp, "Hola", external_id="once-1")
    assert again == conversation_id
    await app.state.worker.run_once()
    # The relay hands the same events to the consumer again (a crash after publishing).
    async with sessionmaker() as session, session.begin():
        events = (
            await session.scalars(
                select(OutboxEvent).where(
                    OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == "message.received"
                )
            )
        ).all()
        await assistant.consume(session, events)
    # Two workers at once.
    await app.state.worker.run_once()
    await assistant.answer_due(sessionmaker)
    await assistant.answer_due(sessionmaker)
    assert len(await replies(client, tenant, conversation_id)) == 1
    async with sessionmaker() as session:
        turns = await session.scalar(
            select(func.count())
            .select_from(AssistantTurn)
            .where(AssistantTurn.tenant_id == tenant.id)
        )
    assert turns == 1


async def test_a_message_relayed_before_a_crash_is_answered_by_the_next_worker(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle, sessionmaker: Any
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    conversation_id = await write(client, tenant, whatsapp, "Buenas tardes", external_id="crash-1")
    # The relay published the event (and noted the turn); the process died before answering.
    while await relay(sessionmaker, app.state.bus) > 0:
        pass
    view = await assistant_view(client, tenant, conversation_id)
    assert [t["status"] for t in view["turns"]] == ["pending"]
    assert await replies(client, tenant, conversation_id) == []

    restarted = Worker(sessionmaker=sessionmaker, bus=app.state.bus, interval=1.0)
    try:
        done = await restarted.run_once()
    finally:
        await restarted.close()
    assert done["assistant"] >= 1
    assert len(await replies(client, tenant, conversation_id)) == 1


# --- the optional model -------------------------------------------------------------------------


async def test_an_openai_compatible_model_may_rewrite_an_answer_and_is_never_required(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(assistant.LLM_KEY_ENV, "sk-test")
    settings = await turn_on(
        client, tenant, llm={"base_url": "https://llm.example/v1", "model": "tiny-chat"}
    )
    assert settings["llm"] == {
        "base_url": "https://llm.example/v1",
        "model": "tiny-chat",
        "key_configured": True,
    }
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await article(client, tenant, "Devoluciones", RETURNS_ES, tags=["plazo"])
    asked: list[dict[str, Any]] = []
    answers = iter(
        [
            httpx.Response(200, json={"choices": [{"message": {"content": "¡Claro! 30 días."}}]}),
            httpx.Response(503, json={"error": "overloaded"}),
            httpx.Response(200, json={"choices": [{"message": {"content": "HANDOFF"}}]}),
        ]
    )

    def model(request: httpx.Request) -> httpx.Response:
        asked.append(
            {
                "url": str(request.url),
                "key": request.headers.get("authorization"),
                **json.loads(request.content),
            }
        )
        return next(answers)

    http = httpx.AsyncClient(transport=httpx.MockTransport(model))

    async def exchange(text: str, external_id: str, sender: str) -> tuple[str, str]:
        conversation_id = await write(
            client, tenant, whatsapp, text, external_id=external_id, sender=sender
        )
        while await relay(sessionmaker, app.state.bus) > 0:
            pass
        await assistant.answer_due(sessionmaker, http)
        said = await replies(client, tenant, conversation_id)
        return conversation_id, said[-1] if said else ""

    try:
        _, said = await exchange("¿Cuál es el plazo de devolución?", "llm-1", "+34600000001")
        assert said == "¡Claro! 30 días."
        assert asked[0]["url"] == "https://llm.example/v1/chat/completions"
        assert asked[0]["key"] == "Bearer sk-test"
        assert asked[0]["model"] == "tiny-chat"
        assert RETURNS_ES in asked[0]["messages"][0]["content"]
        assert asked[0]["messages"][1] == {
            "role": "user",
            "content": "¿Cuál es el plazo de devolución?",
        }
        # The model is down: the article's own text.
        _, said = await exchange("¿plazo para devolver?", "llm-2", "+34600000002")
        assert said == RETURNS_ES
        # The model says the articles do not answer it: a person does.
        conversation_id, said = await exchange(
            "¿Cuál es el plazo de devolución de un tatuaje?", "llm-3", "+34600000003"
        )
        assert said == "Te paso con una persona de nuestro equipo; te responderá por aquí."
        assert (await assistant_view(client, tenant, conversation_id))["handed_off"] is True
    finally:
        await http.aclose()
    assert len(asked) == 3


# --- bad input and other tenants ----------------------------------------------------------------


async def test_bad_settings_and_articles_are_refused_and_other_tenants_ids_are_not_found(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    refused = await client.put(
        "/v1/assistant/settings",
        json={"enabled": True, "channel_kinds": ["whatsapp", "email"]},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "channel_kinds"
    assert "email" in refused.json()["error"]["message"]
    refused = await client.put(
        "/v1/assistant/settings",
        json={"enabled": True, "confidence_threshold": 1.5},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "confidence_threshold"
    # Nothing was half-written: still the defaults.
    current = await client.get("/v1/assistant/settings", headers=tenant.headers)
    assert current.json()["enabled"] is False

    refused = await client.post(
        "/v1/knowledge/articles",
        json={"title": "Horario", "body": "De 10 a 21", "language": "fr"},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "language"
    refused = await client.post(
        "/v1/knowledge/articles",
        json={"title": "  ", "body": "De 10 a 21", "language": "es"},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "title"

    mine = await article(client, tenant, "Horario", "Abrimos de 10 a 21.", tags=["horas"])
    changed = await client.patch(
        f"/v1/knowledge/articles/{mine['id']}",
        json={"body": "Abrimos de 10 a 22."},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["title"], changed.json()["body"]) == ("Horario", "Abrimos de 10 a 22.")
    listed = await client.get(
        "/v1/knowledge/articles", params={"tag": "horas"}, headers=tenant.headers
    )
    assert [a["id"] for a in listed.json()] == [mine["id"]]

    other = await make_tenant(name="Otra tienda")
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method,
            f"/v1/knowledge/articles/{mine['id']}",
            json={"title": "x"} if method == "PATCH" else None,
            headers=other.headers,
        )
        assert response.status_code == 404, (method, response.text)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    conversation_id = await write(client, tenant, whatsapp, "Hola", external_id="t-1")
    response = await client.get(
        f"/v1/assistant/conversations/{conversation_id}", headers=other.headers
    )
    assert response.status_code == 404
    deleted = await client.delete(f"/v1/knowledge/articles/{mine['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/knowledge/articles/{mine['id']}", headers=tenant.headers)
    assert gone.status_code == 404


def test_every_message_of_the_assistant_has_a_spanish_translation() -> None:
    source = Path(assistant.__file__)
    spanish = translations("es")
    untranslated = []
    for _line, message, _comments, _context in extract_from_file("python", str(source)):
        if isinstance(message, tuple):
            if spanish.ngettext(message[0], message[1], 2) == message[1]:
                untranslated.append(message[0])
        elif spanish.gettext(message) == message:
            untranslated.append(message)
    assert untranslated == []


async def test_a_turn_that_keeps_failing_is_given_up_after_three_attempts(
    sessionmaker: Any,
) -> None:
    moment = [datetime(2026, 11, 26, 12, 0, tzinfo=UTC)]
    clock.set_now(lambda: moment[0])
    try:
        # A turn whose tenant cannot be loaded: every attempt fails.
        async with sessionmaker() as session, session.begin():
            turn = AssistantTurn(
                id=new_id(),
                tenant_id="f" * 32,
                message_id=new_id(),
                conversation_id=new_id(),
                customer_id=new_id(),
                channel_id=new_id(),
                channel_kind="whatsapp",
                status="pending",
                attempts=0,
                due_at=moment[0],
                details={},
                created_at=moment[0],
            )
            session.add(turn)
        for _attempt in range(assistant.MAX_ATTEMPTS + 1):
            await assistant.answer_due(sessionmaker)
            moment[0] += timedelta(minutes=10)
        async with sessionmaker() as session:
            stored = await session.get(AssistantTurn, turn.id)
    finally:
        clock.set_now(None)
    assert stored is not None
    assert (stored.status, stored.outcome, stored.attempts) == ("failed", "failed", 3)


async def test_bot_first_the_queue_gets_the_conversation_only_when_the_assistant_hands_it_off(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant)
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await create_queue(client, tenant, "Atención")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    await article(
        client,
        tenant,
        "Devoluciones",
        "Tienes 30 días para devolver cualquier compra en tienda o por correo.",
    )

    conversation_id, said = await ask(
        app, client, tenant, whatsapp, "¿Cuántos días tengo para devolver?", external_id="b-1"
    )
    assert "30 días" in said
    # An agent is free and the queue serves WhatsApp, yet nobody was offered it: the assistant
    # had it in hand.
    assert [o for o in await offers(client, tenant) if o["agent_id"] == ana] == []

    await ask(app, client, tenant, whatsapp, "Quiero hablar con una persona", external_id="b-2")
    assert [o["conversation_id"] for o in await offers(client, tenant) if o["agent_id"] == ana] == [
        conversation_id
    ]


async def test_with_the_assistant_off_a_channel_routes_at_once(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    await turn_on(client, tenant, channel_kinds=["web_chat"])
    whatsapp = await add_channel(client, tenant, "whatsapp")
    await create_queue(client, tenant, "Atención")
    ana = await create_agent(client, tenant, "ana@tienda.es")
    conversation_id, said = await ask(app, client, tenant, whatsapp, "Hola", external_id="c-1")
    assert said == ""
    assert [o["conversation_id"] for o in await offers(client, tenant) if o["agent_id"] == ana] == [
        conversation_id
    ]
