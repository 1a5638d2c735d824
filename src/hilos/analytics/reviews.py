"""Reviews and social mentions: what customers say about the business outside its channels.

What it owns: the ``reviews`` and ``mentions`` tables, recording each one once, listing and
summing them up. The rule it enforces: a review is unique on ``(tenant, source, external_id)``
and a mention on ``(tenant, network, external_id)``; sending one again answers the row stored
the first time and changes nothing (no second event, task or timeline entry), whatever the
resend says, so a source's retries and a re-import are harmless.

Each is scored when it arrives (``analytics.sentiment.score``, in the language it was given
in, else the one its words tell) and announced by ``review.received`` / ``mention.received``
through the outbox. A review by a known customer (identities sent with it) lands on their
timeline and follows them through merges. A negative review or mention opens a follow-up task
for an agent (``review_follow_up`` / ``mention_follow_up``, once per review or mention).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.analytics.review_models import Mention, Review
from hilos.analytics.sentiment import Tally, label_of, language_of, score
from hilos.commerce import catalog
from hilos.conversations.service import decode_cursor, encode_cursor
from hilos.core.clock import as_utc, now
from hilos.core.errors import Invalid
from hilos.core.ids import new_id
from hilos.core.outbox import emit
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope
from hilos.customers import service as customers
from hilos.tasks import service as tasks

REVIEW_FOLLOW_UP = "review_follow_up"
MENTION_FOLLOW_UP = "mention_follow_up"
# A source's clock may run a little ahead of ours; beyond this, a date is a mistake.
_CLOCK_SKEW = timedelta(minutes=5)
_REVIEWS = cast(Table, Review.__table__)
_MENTIONS = cast(Table, Mention.__table__)

customers.register_merge_participant(customers.OwnedRowsParticipant("reviews", Review))


def _written_at(value: datetime | None, *, moment: datetime) -> datetime:
    if value is None:
        return moment
    written = as_utc(value)
    if written > moment + _CLOCK_SKEW:
        raise Invalid(f"created_at {written.isoformat()} is in the future", field="created_at")
    return written


def _language(given: str | None, text: str) -> str | None:
    if given is not None:
        return given.lower().replace("_", "-")
    return language_of(text)


def check_range(start: datetime | None, end: datetime | None) -> None:
    """A date range the right way round (``to`` after ``from``), or ``Invalid``."""
    if start is not None and end is not None and as_utc(end) <= as_utc(start):
        raise Invalid(
            f"the range ends ({as_utc(end).isoformat()}) before it starts "
            f"({as_utc(start).isoformat()}): 'to' must come after 'from'",
            field="to",
        )


def _page_after(statement: Any, model: Any, cursor: str | None) -> Any:
    if cursor is None:
        return statement
    moment, row_id = decode_cursor(cursor)
    return statement.where(
        or_(model.created_at < moment, and_(model.created_at == moment, model.id < row_id))
    )


async def _insert_once(
    session: AsyncSession, table: Table, values: dict[str, Any], key: tuple[str, ...]
) -> bool:
    """Insert ``values`` unless a row with the same ``key`` exists; whether it was inserted."""
    connection = await session.connection()
    inserted = await connection.execute(
        customers.insert_for(connection.dialect.name, table)
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(table.c.id),
        values,
    )
    return inserted.first() is not None


# --- reviews ----------------------------------------------------------------------------------


async def _review_by_key(
    session: AsyncSession, tenant: TenantContext, source: str, external_id: str
) -> Review | None:
    statement = tenant_scope(
        select(Review).where(Review.source == source, Review.external_id == external_id),
        Review,
        tenant,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def record_review(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    source: str,
    external_id: str,
    text: str,
    sku: str | None = None,
    rating: int | None = None,
    language: str | None = None,
    author: str | None = None,
    identities: Sequence[tuple[str, str]] | None = None,
    created_at: datetime | None = None,
) -> tuple[Review, bool]:
    """Record a review, or find the one already recorded with this source and external id.

    Returns the review and whether it is new. An unknown SKU is a 404 naming it; a rating
    outside 1–5, an empty text or a date in the future is ``Invalid``.
    """
    text = text.strip()
    if not text:
        raise Invalid("a review needs some text", field="text")
    if rating is not None and not 1 <= rating <= 5:
        raise Invalid(f"rating must be 1 to 5 stars, not {rating}", field="rating")
    existing = await _review_by_key(session, tenant, source, external_id)
    if existing is not None:
        return existing, False
    moment = now()
    written = _written_at(created_at, moment=moment)
    product_id = None
    if sku is not None:
        product_id = (await catalog.variant_by_sku(session, tenant, sku)).product_id
    customer_id = None
    if identities:
        resolved = await customers.identify(
            session, tenant, identities=identities, field_prefix="customer.identities"
        )
        customer_id = resolved.customer_id
    language = _language(language, text)
    value = score(text, language=language)
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant_id": tenant.id,
        "source": source,
        "external_id": external_id,
        "sku": sku,
        "product_id": product_id,
        "rating": rating,
        "text": text,
        "language": language,
        "author": author,
        "customer_id": customer_id,
        "score": value,
        "label": label_of(value),
        "created_at": written,
        "received_at": moment,
    }
    if not await _insert_once(session, _REVIEWS, values, ("tenant_id", "source", "external_id")):
        # The same review, sent twice at once: the other request stored it first.
        found = await _review_by_key(session, tenant, source, external_id)
        assert found is not None
        return found, False
    payload = {
        "review_id": values["id"],
        "source": source,
        "external_id": external_id,
        "sku": sku,
        "product_id": product_id,
        "rating": rating,
        "language": language,
        "customer_id": customer_id,
        "score": value,
        "label": values["label"],
        "created_at": written.isoformat(),
    }
    await emit(session, tenant_id=tenant.id, topic="review.received", payload=payload)
    if customer_id is not None:
        await customers.add_timeline_event(
            session,
            tenant,
            customer_id=customer_id,
            type="review",
            name=values["label"],
            properties={**payload, "text": text[:1000]},
            context={},
            occurred_at=written,
            source_message_id=None,
        )
    if values["label"] == "negative":
        stars = f" {rating}★" if rating is not None else ""
        await tasks.open_task(
            session,
            tenant,
            kind=REVIEW_FOLLOW_UP,
            source_id=values["id"],
            title=f"{source}{stars}: {text[:200]}",
            customer_id=customer_id,
            conversation_id=None,
            data=payload,
        )
    review = await session.get(Review, values["id"])
    assert review is not None
    return review, True


async def get_review(session: AsyncSession, tenant: TenantContext, review_id: str) -> Review:
    return await get_owned(session, Review, review_id, tenant, what="review")


async def list_reviews(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    label: str | None = None,
    sku: str | None = None,
    source: str | None = None,
    customer_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Review], str | None]:
    """Reviews, the most recently written first, one page at a time; ``start`` is included
    and ``end`` excluded."""
    check_range(start, end)
    statement = tenant_scope(select(Review), Review, tenant)
    if label is not None:
        statement = statement.where(Review.label == label)
    if sku is not None:
        statement = statement.where(Review.sku == sku)
    if source is not None:
        statement = statement.where(Review.source == source)
    if customer_id is not None:
        statement = statement.where(Review.customer_id == customer_id)
    if start is not None:
        statement = statement.where(Review.created_at >= as_utc(start))
    if end is not None:
        statement = statement.where(Review.created_at < as_utc(end))
    statement = _page_after(statement, Review, cursor)
    statement = statement.order_by(Review.created_at.desc(), Review.id.desc()).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


async def review_summary(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    source: str | None = None,
    sku: str | None = None,
) -> dict[str, Any]:
    """Reviews counted by label, with their average rating, in all and per source and per
    product (the most reviewed first), in one query."""
    check_range(start, end)
    statement = select(
        Review.source,
        Review.sku,
        Review.label,
        func.count(),
        func.sum(Review.score),
        func.sum(Review.rating),
        func.count(Review.rating),
    ).where(Review.tenant_id == tenant.id)
    if start is not None:
        statement = statement.where(Review.created_at >= as_utc(start))
    if end is not None:
        statement = statement.where(Review.created_at < as_utc(end))
    if source is not None:
        statement = statement.where(Review.source == source)
    if sku is not None:
        statement = statement.where(Review.sku == sku)
    statement = statement.group_by(Review.source, Review.sku, Review.label)
    total = Tally()
    by_source: dict[str, Tally] = {}
    by_sku: dict[str, Tally] = {}
    for row_source, row_sku, label, count, score_sum, rating_sum, rated in (
        await session.execute(statement)
    ).all():
        group = (label, int(count), float(score_sum or 0.0), int(rating_sum or 0), int(rated))
        total.add(*group)
        by_source.setdefault(row_source, Tally()).add(*group)
        if row_sku is not None:
            by_sku.setdefault(row_sku, Tally()).add(*group)
    names = await catalog.names_by_sku(session, tenant, sorted(by_sku))
    return {
        **total.as_dict(ratings=True),
        "by_source": [
            {"source": name, **tally.as_dict(ratings=True)}
            for name, tally in sorted(by_source.items(), key=lambda kv: (-kv[1].count, kv[0]))
        ],
        "products": [
            {
                "sku": code,
                "name": names[code][0] if code in names else None,
                **tally.as_dict(ratings=True),
            }
            for code, tally in sorted(by_sku.items(), key=lambda kv: (-kv[1].count, kv[0]))
        ],
    }


# --- mentions ---------------------------------------------------------------------------------


async def _mention_by_key(
    session: AsyncSession, tenant: TenantContext, network: str, external_id: str
) -> Mention | None:
    statement = tenant_scope(
        select(Mention).where(Mention.network == network, Mention.external_id == external_id),
        Mention,
        tenant,
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def record_mention(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    network: str,
    external_id: str,
    author: str,
    text: str,
    url: str,
    created_at: datetime,
    language: str | None = None,
) -> tuple[Mention, bool]:
    """Record a social mention, or find the one already recorded with this network and
    external id. Returns the mention and whether it is new."""
    text, author = text.strip(), author.strip()
    if not text:
        raise Invalid("a mention needs some text", field="text")
    if not author:
        raise Invalid("a mention needs its author", field="author")
    existing = await _mention_by_key(session, tenant, network, external_id)
    if existing is not None:
        return existing, False
    moment = now()
    written = _written_at(created_at, moment=moment)
    language = _language(language, text)
    value = score(text, language=language)
    values: dict[str, Any] = {
        "id": new_id(),
        "tenant_id": tenant.id,
        "network": network,
        "external_id": external_id,
        "author": author,
        "text": text,
        "url": url,
        "language": language,
        "score": value,
        "label": label_of(value),
        "created_at": written,
        "received_at": moment,
    }
    if not await _insert_once(session, _MENTIONS, values, ("tenant_id", "network", "external_id")):
        found = await _mention_by_key(session, tenant, network, external_id)
        assert found is not None
        return found, False
    payload = {
        "mention_id": values["id"],
        "network": network,
        "external_id": external_id,
        "author": author,
        "url": url,
        "language": language,
        "score": value,
        "label": values["label"],
        "created_at": written.isoformat(),
    }
    await emit(session, tenant_id=tenant.id, topic="mention.received", payload=payload)
    if values["label"] == "negative":
        await tasks.open_task(
            session,
            tenant,
            kind=MENTION_FOLLOW_UP,
            source_id=values["id"],
            title=f"{network} @{author}: {text[:200]}",
            customer_id=None,
            conversation_id=None,
            data=payload,
        )
    mention = await session.get(Mention, values["id"])
    assert mention is not None
    return mention, True


async def get_mention(session: AsyncSession, tenant: TenantContext, mention_id: str) -> Mention:
    return await get_owned(session, Mention, mention_id, tenant, what="mention")


async def list_mentions(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    label: str | None = None,
    network: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Mention], str | None]:
    """Mentions, the most recently written first, one page at a time."""
    check_range(start, end)
    statement = tenant_scope(select(Mention), Mention, tenant)
    if label is not None:
        statement = statement.where(Mention.label == label)
    if network is not None:
        statement = statement.where(Mention.network == network)
    if start is not None:
        statement = statement.where(Mention.created_at >= as_utc(start))
    if end is not None:
        statement = statement.where(Mention.created_at < as_utc(end))
    statement = _page_after(statement, Mention, cursor)
    statement = statement.order_by(Mention.created_at.desc(), Mention.id.desc()).limit(limit + 1)
    rows = list((await session.execute(statement)).scalars().all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


async def mention_summary(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    network: str | None = None,
) -> dict[str, Any]:
    """Mentions counted by label, in all and per network (the busiest first)."""
    check_range(start, end)
    statement = select(Mention.network, Mention.label, func.count(), func.sum(Mention.score)).where(
        Mention.tenant_id == tenant.id
    )
    if start is not None:
        statement = statement.where(Mention.created_at >= as_utc(start))
    if end is not None:
        statement = statement.where(Mention.created_at < as_utc(end))
    if network is not None:
        statement = statement.where(Mention.network == network)
    total = Tally()
    by_network: dict[str, Tally] = {}
    for row_network, label, count, score_sum in (
        await session.execute(statement.group_by(Mention.network, Mention.label))
    ).all():
        total.add(label, int(count), float(score_sum or 0.0))
        by_network.setdefault(row_network, Tally()).add(label, int(count), float(score_sum or 0.0))
    return {
        **total.as_dict(),
        "by_network": [
            {"network": name, **tally.as_dict()}
            for name, tally in sorted(by_network.items(), key=lambda kv: (-kv[1].count, kv[0]))
        ],
    }
