"""Reviews and social mentions: recorded once per source and external id with their sentiment,
a negative one followed up by an agent and shown on the customer's timeline, bad input refused
with nothing written, other tenants kept out, and the summaries (reviews, mentions, and the
sentiment of messages, reviews and mentions together) adding up on hand-made data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hilos.analytics.review_models import Mention, Review
from hilos.core import clock
from hilos.core.models import OutboxEvent
from hilos.customers.models import Customer
from tests.commerce.orders_helpers import product
from tests.conftest import TenantHandle, add_channel, identify, inbound

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def fixed_now() -> Iterator[datetime]:
    clock.set_now(lambda: NOW)
    yield NOW
    clock.set_now(None)


def review_body(external_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"source": "google", "external_id": external_id, "text": text, **extra}


def mention_body(external_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "network": "instagram",
        "external_id": external_id,
        "author": "lucia.viaja",
        "text": text,
        "url": f"https://www.instagram.com/p/{external_id}/",
        "created_at": "2026-11-19T18:30:00Z",
        **extra,
    }


async def post_review(
    client: httpx.AsyncClient, tenant: TenantHandle, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = await client.post("/v1/reviews", json=body, headers=tenant.headers)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def post_mention(
    client: httpx.AsyncClient, tenant: TenantHandle, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = await client.post("/v1/mentions", json=body, headers=tenant.headers)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def count(
    sessionmaker: async_sessionmaker[AsyncSession], model: Any, tenant: TenantHandle
) -> int:
    async with sessionmaker() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.tenant_id == tenant.id)
            )
            or 0
        )


async def events(
    sessionmaker: async_sessionmaker[AsyncSession], tenant: TenantHandle, topic: str
) -> list[dict[str, Any]]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxEvent.payload).where(
                OutboxEvent.tenant_id == tenant.id, OutboxEvent.topic == topic
            )
        )
        return list(rows.all())


async def tasks_of(
    client: httpx.AsyncClient, tenant: TenantHandle, kind: str
) -> list[dict[str, Any]]:
    response = await client.get("/v1/tasks", params={"kind": kind}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


# --- recording ----------------------------------------------------------------------------------


async def test_a_review_is_scored_and_a_resend_answers_the_same_row(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    fixed_now: datetime,
) -> None:
    await product(client, tenant, "ZAPA-42")
    body = review_body(
        "g-1001",
        "Llegó roto y nadie contesta. Una vergüenza.",
        sku="ZAPA-42",
        rating=1,
        author="Marta G.",
        customer={"identities": [{"kind": "email", "value": "marta@example.com"}]},
        created_at="2026-11-18T09:15:00Z",
    )
    first = await post_review(client, tenant, body)
    assert first["label"] == "negative"
    assert first["score"] <= -0.4
    assert first["language"] == "es"
    assert (first["sku"], first["rating"], first["source"]) == ("ZAPA-42", 1, "google")
    assert first["created_at"].startswith("2026-11-18T09:15:00")
    assert first["customer_id"] is not None

    # The source retries, even with other words: the first review stands, nothing is added.
    again = await post_review(client, tenant, {**body, "text": "Todo perfecto"}, status=200)
    assert again == first
    assert await count(sessionmaker, Review, tenant) == 1
    assert len(await events(sessionmaker, tenant, "review.received")) == 1
    assert len(await tasks_of(client, tenant, "review_follow_up")) == 1

    shown = await client.get(f"/v1/reviews/{first['id']}", headers=tenant.headers)
    assert shown.status_code == 200
    assert shown.json() == first


async def test_reviews_in_spanish_and_english_get_their_label(
    client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    cases = [
        ("es-pos", "Me encanta, la calidad es excelente", None, "positive"),
        ("es-neg", "Fatal servicio, no lo recomiendo", None, "negative"),
        ("es-neu", "¿Abrís el domingo?", None, "neutral"),
        ("en-pos", "Great product, I love it", None, "positive"),
        ("en-neg", "Terrible quality, it broke after a week", None, "negative"),
        ("en-neu", "The delivery took five days", None, "neutral"),
        # VADER's English lexicon knows words ours lacks ("poor").
        ("en-poor", "Very poor quality", "en", "negative"),
    ]
    for external_id, text, language, label in cases:
        body = review_body(external_id, text, **({"language": language} if language else {}))
        review = await post_review(client, tenant, body)
        assert review["label"] == label, (text, review["score"])
        assert review["language"] == external_id[:2]


async def test_a_negative_review_by_a_known_customer_lands_on_their_timeline_and_with_an_agent(
    client: httpx.AsyncClient, tenant: TenantHandle, fixed_now: datetime
) -> None:
    known = await identify(client, tenant, ("email", "pablo@example.com"), name="Pablo")
    customer = {"identities": [{"kind": "email", "value": "pablo@example.com"}]}
    angry = await post_review(
        client,
        tenant,
        review_body("t-1", "Worst shop ever, they ignored me for an hour 😡", customer=customer),
    )
    happy = await post_review(
        client, tenant, review_body("t-2", "Great product, I love it", customer=customer)
    )
    assert angry["customer_id"] == happy["customer_id"] == known["customer_id"]

    response = await client.get(f"/v1/customers/{known['customer_id']}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    timeline = [item for item in response.json()["timeline"] if item["type"] == "review"]
    assert sorted(item["name"] for item in timeline) == ["negative", "positive"]
    negative = next(item for item in timeline if item["name"] == "negative")
    assert negative["properties"]["review_id"] == angry["id"]
    assert "ignored me" in negative["properties"]["text"]

    # Only the negative one waits for an agent, with who wrote it.
    follow_ups = await tasks_of(client, tenant, "review_follow_up")
    assert [(t["source_id"], t["customer_id"]) for t in follow_ups] == [
        (angry["id"], known["customer_id"])
    ]
    assert "ignored me" in follow_ups[0]["title"]

    listed = await client.get(
        "/v1/reviews", params={"customer_id": known["customer_id"]}, headers=tenant.headers
    )
    assert {r["id"] for r in listed.json()["items"]} == {angry["id"], happy["id"]}


async def test_mentions_are_recorded_once_and_a_negative_one_is_followed_up(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    fixed_now: datetime,
) -> None:
    happy = await post_mention(
        client, tenant, mention_body("C1", "Qué bonito el escaparate de la tienda de Gran Vía 😍")
    )
    assert (happy["label"], happy["language"], happy["author"]) == ("positive", "es", "lucia.viaja")
    assert happy["url"] == "https://www.instagram.com/p/C1/"
    angry_body = mention_body(
        "1790001", "@tienda my order never arrived and nobody answers", network="x", author="jd"
    )
    angry = await post_mention(client, tenant, angry_body)
    assert angry["label"] == "negative"
    assert await post_mention(client, tenant, angry_body, status=200) == angry

    assert await count(sessionmaker, Mention, tenant) == 2
    published = await events(sessionmaker, tenant, "mention.received")
    assert sorted(p["label"] for p in published) == ["negative", "positive"]
    follow_ups = await tasks_of(client, tenant, "mention_follow_up")
    assert [t["source_id"] for t in follow_ups] == [angry["id"]]

    negatives = await client.get(
        "/v1/mentions", params={"label": "negative"}, headers=tenant.headers
    )
    assert [m["id"] for m in negatives.json()["items"]] == [angry["id"]]
    on_x = await client.get("/v1/mentions", params={"network": "x"}, headers=tenant.headers)
    assert [m["id"] for m in on_x.json()["items"]] == [angry["id"]]


# --- bad input and other tenants ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "status", "field", "words"),
    [
        ({"rating": 6}, 422, "rating", "less than or equal to 5"),
        ({"rating": 0}, 422, "rating", "greater than or equal to 1"),
        ({"text": "   "}, 422, "text", "at least 1 character"),
        ({"sku": "NO-EXISTE"}, 404, "sku", "NO-EXISTE"),
        ({"created_at": "2027-01-01T00:00:00Z"}, 422, "created_at", "in the future"),
        ({"source": "Google Reviews"}, 422, "source", "pattern"),
        ({"customer": {"identities": [{"kind": "phone", "value": "abc"}]}}, 422, None, "phone"),
        ({"stars": 5}, 422, "stars", "Extra inputs"),
    ],
)
async def test_bad_reviews_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    fixed_now: datetime,
    change: dict[str, Any],
    status: int,
    field: str | None,
    words: str,
) -> None:
    body = {**review_body("bad-1", "Muy buena calidad"), **change}
    response = await client.post("/v1/reviews", json=body, headers=tenant.headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"]
    if field is not None:
        assert error["field"] == field
    assert await count(sessionmaker, Review, tenant) == 0
    assert await count(sessionmaker, Customer, tenant) == 0
    assert await events(sessionmaker, tenant, "review.received") == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"text": ""}, "text"),
        ({"url": "not a url"}, "url"),
        ({"created_at": None}, "created_at"),
        ({"author": ""}, "author"),
    ],
)
async def test_bad_mentions_are_refused(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    sessionmaker: async_sessionmaker[AsyncSession],
    change: dict[str, Any],
    field: str,
) -> None:
    response = await client.post(
        "/v1/mentions", json={**mention_body("bad", "hola"), **change}, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field
    assert await count(sessionmaker, Mention, tenant) == 0


@pytest.mark.parametrize(
    ("path", "params", "field", "words"),
    [
        ("/v1/reviews", {"lable": "negative"}, "lable", "unknown filter"),
        ("/v1/reviews/summary", {"product": "X"}, "product", "unknown filter"),
        ("/v1/mentions", {"source": "x"}, "source", "unknown filter"),
        ("/v1/sentiment/summary", {"queue": "q"}, "queue", "unknown filter"),
        (
            "/v1/reviews",
            {"from": "2026-11-10T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            "to",
            "'to' must come after 'from'",
        ),
        (
            "/v1/sentiment/summary",
            {"from": "2026-11-10T00:00:00Z", "to": "2026-11-01T00:00:00Z"},
            "to",
            "'to' must come after 'from'",
        ),
        ("/v1/reviews", {"label": "angry"}, "label", "'negative', 'neutral' or 'positive'"),
        ("/v1/mentions/summary", {"from": "yesterday"}, "from", "datetime"),
    ],
)
async def test_bad_filters_are_refused_by_name(
    client: httpx.AsyncClient,
    tenant: TenantHandle,
    path: str,
    params: dict[str, str],
    field: str,
    words: str,
) -> None:
    response = await client.get(path, params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"].endswith(field)
    assert words in error["message"]


async def test_another_tenants_reviews_and_mentions_are_not_there(
    client: httpx.AsyncClient, tenant: TenantHandle, make_tenant: Any
) -> None:
    review = await post_review(client, tenant, review_body("g-7", "Excelente"))
    mention = await post_mention(client, tenant, mention_body("M7", "Genial"))
    other: TenantHandle = await make_tenant("Otra tienda")
    for path in (f"/v1/reviews/{review['id']}", f"/v1/mentions/{mention['id']}"):
        response = await client.get(path, headers=other.headers)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    assert (await client.get("/v1/reviews", headers=other.headers)).json()["items"] == []
    summary = await client.get("/v1/reviews/summary", headers=other.headers)
    assert summary.json()["count"] == 0
    # The same source and external id in another tenant is another review.
    theirs = await post_review(client, other, review_body("g-7", "Fatal"))
    assert theirs["id"] != review["id"]
    assert theirs["label"] == "negative"


# --- summaries ----------------------------------------------------------------------------------


async def test_the_review_summary_counts_labels_and_averages_ratings_per_product(
    client: httpx.AsyncClient, tenant: TenantHandle, fixed_now: datetime
) -> None:
    await product(client, tenant, "BOLSO")
    await product(client, tenant, "GORRA")
    made = [
        ("r1", "BOLSO", 5, "Me encanta, calidad excelente", "google", "2026-11-10T10:00:00Z"),
        ("r2", "BOLSO", 4, "Great product, I love it", "web", "2026-11-11T10:00:00Z"),
        ("r3", "BOLSO", 1, "Llegó roto, una vergüenza", "google", "2026-11-12T10:00:00Z"),
        ("r4", "GORRA", 3, "Es una gorra azul", "web", "2026-11-13T10:00:00Z"),
        ("r5", None, None, "Nadie contesta al teléfono, fatal", "trustpilot", "2026-11-14T10:00Z"),
        # Before the range.
        ("r0", "GORRA", 1, "Horrible", "web", "2026-10-01T10:00:00Z"),
    ]
    for external_id, sku, rating, text, source, written in made:
        body = review_body(external_id, text, source=source, created_at=written)
        if sku:
            body["sku"] = sku
        if rating:
            body["rating"] = rating
        await post_review(client, tenant, body)

    params = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}
    response = await client.get("/v1/reviews/summary", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    summary = response.json()
    assert (summary["count"], summary["negative"], summary["neutral"], summary["positive"]) == (
        5,
        2,
        1,
        2,
    )
    assert summary["shares"] == {"negative": 0.4, "neutral": 0.2, "positive": 0.4}
    # (5 + 4 + 1 + 3) / 4 rated reviews; the shop review had no stars.
    assert (summary["average_rating"], summary["rated"]) == (3.25, 4)
    products = {p["sku"]: p for p in summary["products"]}
    assert list(products) == ["BOLSO", "GORRA"]
    assert (products["BOLSO"]["count"], products["BOLSO"]["average_rating"]) == (3, 3.33)
    assert (products["BOLSO"]["positive"], products["BOLSO"]["negative"]) == (2, 1)
    assert products["BOLSO"]["name"] == "Producto BOLSO"
    assert (products["GORRA"]["count"], products["GORRA"]["neutral"]) == (1, 1)
    sources = {s["source"]: s["count"] for s in summary["by_source"]}
    assert sources == {"google": 2, "web": 2, "trustpilot": 1}

    everything = await client.get("/v1/reviews/summary", headers=tenant.headers)
    assert everything.json()["count"] == 6
    one = await client.get(
        "/v1/reviews/summary", params={**params, "sku": "BOLSO"}, headers=tenant.headers
    )
    assert one.json()["count"] == 3

    listed = await client.get(
        "/v1/reviews", params={**params, "label": "negative"}, headers=tenant.headers
    )
    assert [r["external_id"] for r in listed.json()["items"]] == ["r5", "r3"]
    page = await client.get("/v1/reviews", params={"limit": 4}, headers=tenant.headers)
    assert [r["external_id"] for r in page.json()["items"]] == ["r5", "r4", "r3", "r2"]
    rest = await client.get(
        "/v1/reviews",
        params={"limit": 4, "cursor": page.json()["next_cursor"]},
        headers=tenant.headers,
    )
    assert [r["external_id"] for r in rest.json()["items"]] == ["r1", "r0"]
    assert rest.json()["next_cursor"] is None


async def test_the_sentiment_summary_adds_up_messages_reviews_and_mentions(
    app: Any, client: httpx.AsyncClient, tenant: TenantHandle
) -> None:
    moment = [datetime(2026, 11, 5, 9, 0, tzinfo=UTC)]
    clock.set_now(lambda: moment[0])
    try:
        whatsapp = await add_channel(client, tenant, "whatsapp")
        email = await add_channel(client, tenant, "email")
        messages = [
            (whatsapp, "whatsapp", "+34600400001", "¡Es una vergüenza, sigo sin mi pedido!"),
            (whatsapp, "whatsapp", "+34600400002", "Muchas gracias, todo perfecto"),
            (whatsapp, "whatsapp", "+34600400003", "Thank you so much, great service!"),
            (email, "email", "ana@example.com", "¿Cuál es el horario de la tienda?"),
        ]
        for n, (channel_id, kind, sender, text) in enumerate(messages):
            moment[0] += timedelta(minutes=10)
            response = await inbound(
                client,
                tenant,
                channel_id=channel_id,
                external_id=f"sum-{n}",
                kind=kind,
                value=sender,
                text=text,
            )
            assert response.status_code == 200, response.text
        await app.state.worker.run_once()
        await post_review(client, tenant, review_body("s1", "Fatal, no lo recomiendo"))
        await post_review(client, tenant, review_body("s2", "Excelente", source="whatsapp"))
        await post_mention(
            client, tenant, mention_body("s3", "Genial la tienda", created_at=moment[0].isoformat())
        )
        # A month later: outside the range.
        moment[0] += timedelta(days=30)
        await post_review(client, tenant, review_body("s4", "Horrible"))
    finally:
        clock.set_now(None)

    params = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-30T00:00:00Z"}
    response = await client.get("/v1/sentiment/summary", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    summary = response.json()
    counts = {
        part: (summary[part]["negative"], summary[part]["neutral"], summary[part]["positive"])
        for part in ("messages", "reviews", "mentions", "overall")
    }
    assert counts == {
        "messages": (1, 1, 2),
        "reviews": (1, 0, 1),
        "mentions": (0, 0, 1),
        "overall": (2, 1, 4),
    }
    assert summary["overall"]["shares"] == {
        "negative": round(2 / 7, 4),
        "neutral": round(1 / 7, 4),
        "positive": round(4 / 7, 4),
    }
    assert summary["mentions"]["average_score"] > 0.4
    assert summary["overall"]["count"] == 7

    # One channel: WhatsApp's messages (and reviews whose source is WhatsApp).
    response = await client.get(
        "/v1/sentiment/summary", params={**params, "channel": "whatsapp"}, headers=tenant.headers
    )
    by_channel = response.json()
    assert (by_channel["messages"]["count"], by_channel["messages"]["negative"]) == (3, 1)
    assert (by_channel["reviews"]["count"], by_channel["reviews"]["positive"]) == (1, 1)
    assert by_channel["mentions"]["count"] == 0
    assert by_channel["mentions"]["shares"] == {
        "negative": None,
        "neutral": None,
        "positive": None,
    }
