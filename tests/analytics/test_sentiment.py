"""Sentiment: how customers' messages in Spanish and English score, that each inbound message is
scored once by the relay, that the conversation API shows the latest score, and that an upset
customer is offered before a calm one who has waited a little longer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics import sentiment
from hilos.analytics.models import MessageSentiment
from hilos.analytics.sentiment import label_of, score
from hilos.core import clock
from hilos.core.models import OutboxEvent
from tests.conftest import TenantHandle, add_channel, inbound
from tests.routing.helpers import (
    ManualClock,
    conversation,
    create_agent,
    create_queue,
    offers,
    routing_log,
    stats,
)

# --- the scorer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "¡Es una vergüenza, sigo sin mi pedido!",
        "Esto es una estafa, quiero mi dinero",
        "El producto llegó roto y nadie me responde",
        "Todavía no ha llegado el paquete",
        "No funciona. Estoy harto 😡",
        "Servicio pésimo 👎",
        "This is a scam, worst service ever",
        "My order never arrived and nobody answers",
        "It's not working, I'm so frustrated",
        "Still waiting for my refund, this is ridiculous",
    ],
)
def test_complaints_score_negative_in_both_languages(text: str) -> None:
    assert score(text) <= -0.4
    assert label_of(score(text)) == "negative"


@pytest.mark.parametrize(
    "text",
    [
        "Muchas gracias, todo perfecto",
        "¡Genial! Me ha llegado hoy, sois muy amables 😊",
        "Gracias por la ayuda 🙏",
        "Thank you so much, great service!",
        "Perfect, it works now 👍",
        "I love it ❤️",
    ],
)
def test_thanks_and_praise_score_positive_in_both_languages(text: str) -> None:
    assert score(text) >= 0.4
    assert label_of(score(text)) == "positive"


@pytest.mark.parametrize(
    "text",
    [
        "Hola, necesito ayuda con mi pedido",
        "Quiero hacer una devolución",
        "Buenas tardes, ¿podéis llamarme esta tarde?",
        "¿Cuál es el horario de la tienda de Valencia?",
        "Hi, I'd like to return my order 12345",
        "What time do you open on Saturday?",
    ],
)
def test_plain_requests_are_neutral(text: str) -> None:
    assert label_of(score(text)) == "neutral"
    assert score(text) == 0


def test_negation_turns_a_word_around() -> None:
    assert label_of(score("No está mal")) != "negative"
    assert label_of(score("not bad at all")) != "negative"
    assert score("No me gusta nada") < 0 < score("Me gusta")
    assert score("no es bueno") < 0 < score("es bueno")
    assert score("I don't like it") < 0
    # Punctuation ends the negation: a polite "no, thanks" stays friendly.
    assert score("No, gracias") > 0


def test_intensifiers_capitals_and_exclamations_make_it_stronger() -> None:
    plain = score("mal servicio")
    assert score("muy mal servicio") < plain
    assert score("MAL servicio") < plain
    assert score("mal servicio!!!") < plain
    assert score("malísimo servicio") < plain
    assert score("very good") > score("good") > 0


def test_emoji_and_emoticons_count() -> None:
    for angry in ("😡", "😠", "👎", ":("):
        assert label_of(score(angry)) == "negative", angry
    for happy in ("😊", "🙏", "👍", "❤️", ":)"):
        assert label_of(score(happy)) == "positive", happy
    assert score("Ok 😡") < score("Ok") < score("Ok 😊")


def test_accents_case_and_stretched_letters_do_not_matter() -> None:
    assert score("VERGUENZA") <= score("vergüenza") < 0
    assert score("graciaaaas") == score("gracias") > 0


def test_what_follows_but_counts_more() -> None:
    assert label_of(score("Gracias, pero sigue sin funcionar")) == "negative"
    assert label_of(score("Tardó un poco, pero todo perfecto")) == "positive"


@given(st.text(max_size=400))
def test_every_score_stays_between_minus_one_and_one(text: str) -> None:
    value = score(text)
    assert -1.0 <= value <= 1.0
    assert label_of(value) in ("negative", "neutral", "positive")


@given(st.lists(st.sampled_from(["😡", "estafa", "HORRIBLE", "!!!", "muy", "fatal"]), max_size=300))
def test_even_a_flood_of_anger_stays_in_range(words: list[str]) -> None:
    assert -1.0 <= score(" ".join(words)) <= 0


# --- stored by the relay, shown by the API --------------------------------------------------


async def write(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    channel_id: str,
    sender: str,
    ext: str,
    text: str,
) -> str:
    response = await inbound(
        client,
        tenant,
        channel_id=channel_id,
        external_id=ext,
        kind="whatsapp",
        value=sender,
        text=text,
    )
    assert response.status_code == 200, response.text
    conversation_id: str = response.json()["conversation_id"]
    return conversation_id


async def test_the_conversation_shows_the_latest_message_sentiment(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    make_tenant: Any,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    channel = await add_channel(client, tenant, "whatsapp")
    conversation_id = await write(
        client,
        tenant,
        channel,
        "+34600300001",
        "wamid.s1",
        "¡Es una vergüenza, sigo sin mi pedido!",
    )
    # Not scored before the worker's relay runs.
    assert (await conversation(client, tenant, conversation_id))["sentiment"] is None
    await app.state.worker.run_once()
    shown = (await conversation(client, tenant, conversation_id))["sentiment"]
    assert shown["label"] == "negative"
    assert shown["score"] <= -0.4

    await write(client, tenant, channel, "+34600300001", "wamid.s2", "Ya me ha llegado, ¡gracias!")
    await app.state.worker.run_once()
    assert (await conversation(client, tenant, conversation_id))["sentiment"]["label"] == "positive"
    listed = await client.get("/v1/conversations", headers=tenant.headers)
    assert [c["sentiment"]["label"] for c in listed.json()["items"]] == ["positive"]

    # Scoring twice changes nothing: the relay's retry after a crash finds the rows there.
    async with sessionmaker() as session, session.begin():
        events = (
            (
                await session.execute(
                    select(OutboxEvent).where(OutboxEvent.topic == "message.received")
                )
            )
            .scalars()
            .all()
        )
        await sentiment.consume(session, events)
    async with sessionmaker() as session:
        scored = select(func.count()).where(MessageSentiment.tenant_id == tenant.id)
        assert await session.scalar(scored) == 2

    # Another tenant's conversation is not theirs to read.
    other: TenantHandle = await make_tenant("Otra tienda")
    response = await client.get(f"/v1/conversations/{conversation_id}", headers=other.headers)
    assert response.status_code == 404


# --- routing ----------------------------------------------------------------------------------


@pytest.fixture
def manual_clock() -> Iterator[ManualClock]:
    manual = ManualClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    clock.set_now(lambda: manual.now)
    yield manual
    clock.set_now(None)


@pytest.mark.parametrize(("points", "angry_first"), [(None, True), (0, False)])
async def test_an_upset_customer_is_offered_before_a_calm_one_who_came_earlier(
    app: Any,
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    manual_clock: ManualClock,
    points: int | None,
    angry_first: bool,
) -> None:
    if points is not None:
        response = await client.patch(
            "/v1/routing/settings",
            json={"negative_sentiment_points": points},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["negative_sentiment_points"] == points
    channel = await add_channel(client, tenant, "whatsapp")
    queue = await create_queue(client, tenant, "Soporte ES")
    ana = await create_agent(
        client, tenant, "ana@tienda.es", online=False, capacity={"whatsapp": 1}
    )
    calm = await write(
        client, tenant, channel, "+34600300002", "wamid.c1", "Hola, ¿cuándo llega mi pedido?"
    )
    manual_clock.advance(seconds=30)
    angry = await write(
        client,
        tenant,
        channel,
        "+34600300003",
        "wamid.a1",
        "¡Es una vergüenza, sigo sin mi pedido!",
    )
    await app.state.worker.run_once()
    assert (await stats(client, tenant, queue["id"]))["waiting"] == 2

    # Ana comes online with room for one: she is offered the best waiting conversation.
    response = await client.put(
        f"/v1/agents/{ana}/presence", json={"status": "online"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    offered = [o["conversation_id"] for o in await offers(client, tenant, agent_id=ana)]
    assert offered == ([angry] if angry_first else [calm])

    queued = (await routing_log(client, tenant, angry))[0]
    assert queued["action"] == "queued"
    assert queued["details"]["sentiment"] <= -0.4
    assert queued["details"]["priority"] == (2 if angry_first else 0)
    if angry_first:
        assert "upset customer" in queued["reason"]
    calm_queued = (await routing_log(client, tenant, calm))[0]
    assert calm_queued["details"]["priority"] == 0
    assert calm_queued["details"]["sentiment"] == 0
