"""HTTP API of reviews, social mentions and sentiment. Thin: validates requests and calls
``hilos.analytics.reviews`` and ``hilos.analytics.sentiment``.

Recording a review or mention answers 201 when it is new and 200 with the stored row when its
source (or network) and external id were already recorded. Lists and summaries take their
filters as query parameters; a filter they do not have, or a date range that ends before it
starts, is a 422 that names it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from hilos.analytics import reviews, sentiment
from hilos.analytics.review_models import Mention, Review
from hilos.analytics.review_schemas import (
    MentionIn,
    MentionOut,
    MentionPage,
    MentionSummary,
    ReviewIn,
    ReviewOut,
    ReviewPage,
    ReviewSummary,
    SentimentSummary,
)
from hilos.core.clock import as_utc, now
from hilos.core.deps import CurrentPrincipal, DbSession
from hilos.core.errors import Invalid

router = APIRouter(tags=["reviews"])

LabelFilter = Literal["negative", "neutral", "positive"]
Start = Annotated[
    datetime | None, Query(alias="from", description="written at or after (UTC if no zone)")
]
End = Annotated[datetime | None, Query(alias="to", description="written before (UTC if no zone)")]
Cursor = Annotated[str | None, Query(max_length=200)]
Limit = Annotated[int, Query(ge=1, le=200)]
SourceName = Annotated[str | None, Query(max_length=32)]
_DEFAULT_SPAN = timedelta(days=30)


def _only(*names: str) -> Callable[[Request], None]:
    """A dependency that rejects query parameters other than ``names``: a misspelt filter
    would otherwise be ignored and answer for everything."""
    allowed = frozenset(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise Invalid(
                f"unknown filter {unknown[0]!r}; this endpoint takes {', '.join(sorted(allowed))}",
                field=unknown[0],
                code="unknown_filter",
            )

    return check


def _review_out(review: Review) -> ReviewOut:
    return ReviewOut.model_validate(review)


def _mention_out(mention: Mention) -> MentionOut:
    return MentionOut.model_validate(mention)


# --- reviews ----------------------------------------------------------------------------------


@router.post("/v1/reviews", response_model=ReviewOut, status_code=201)
async def record_review(
    body: ReviewIn, response: Response, session: DbSession, principal: CurrentPrincipal
) -> ReviewOut:
    review, created = await reviews.record_review(
        session,
        principal.tenant,
        source=body.source,
        external_id=body.external_id,
        text=body.text,
        sku=body.sku,
        rating=body.rating,
        language=body.language,
        author=body.author,
        identities=[(i.kind, i.value) for i in body.customer.identities] if body.customer else None,
        created_at=body.created_at,
    )
    if not created:
        response.status_code = 200
    return _review_out(review)


@router.get(
    "/v1/reviews",
    response_model=ReviewPage,
    dependencies=[
        Depends(_only("label", "sku", "source", "customer_id", "from", "to", "cursor", "limit"))
    ],
)
async def list_reviews(
    session: DbSession,
    principal: CurrentPrincipal,
    start: Start = None,
    end: End = None,
    label: LabelFilter | None = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    source: SourceName = None,
    customer_id: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> ReviewPage:
    rows, next_cursor = await reviews.list_reviews(
        session,
        principal.tenant,
        label=label,
        sku=sku,
        source=source,
        customer_id=customer_id,
        start=start,
        end=end,
        cursor=cursor,
        limit=limit,
    )
    return ReviewPage(items=[_review_out(r) for r in rows], next_cursor=next_cursor)


@router.get(
    "/v1/reviews/summary",
    response_model=ReviewSummary,
    dependencies=[Depends(_only("from", "to", "source", "sku"))],
)
async def review_summary(
    session: DbSession,
    principal: CurrentPrincipal,
    start: Start = None,
    end: End = None,
    source: SourceName = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    return await reviews.review_summary(
        session, principal.tenant, start=start, end=end, source=source, sku=sku
    )


@router.get("/v1/reviews/{review_id}", response_model=ReviewOut)
async def get_review(review_id: str, session: DbSession, principal: CurrentPrincipal) -> ReviewOut:
    return _review_out(await reviews.get_review(session, principal.tenant, review_id))


# --- mentions ---------------------------------------------------------------------------------


@router.post("/v1/mentions", response_model=MentionOut, status_code=201)
async def record_mention(
    body: MentionIn, response: Response, session: DbSession, principal: CurrentPrincipal
) -> MentionOut:
    mention, created = await reviews.record_mention(
        session,
        principal.tenant,
        network=body.network,
        external_id=body.external_id,
        author=body.author,
        text=body.text,
        url=str(body.url),
        created_at=body.created_at,
        language=body.language,
    )
    if not created:
        response.status_code = 200
    return _mention_out(mention)


@router.get(
    "/v1/mentions",
    response_model=MentionPage,
    dependencies=[Depends(_only("label", "network", "from", "to", "cursor", "limit"))],
)
async def list_mentions(
    session: DbSession,
    principal: CurrentPrincipal,
    start: Start = None,
    end: End = None,
    label: LabelFilter | None = None,
    network: SourceName = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> MentionPage:
    rows, next_cursor = await reviews.list_mentions(
        session,
        principal.tenant,
        label=label,
        network=network,
        start=start,
        end=end,
        cursor=cursor,
        limit=limit,
    )
    return MentionPage(items=[_mention_out(m) for m in rows], next_cursor=next_cursor)


@router.get(
    "/v1/mentions/summary",
    response_model=MentionSummary,
    dependencies=[Depends(_only("from", "to", "network"))],
)
async def mention_summary(
    session: DbSession,
    principal: CurrentPrincipal,
    start: Start = None,
    end: End = None,
    network: SourceName = None,
) -> dict[str, Any]:
    return await reviews.mention_summary(
        session, principal.tenant, start=start, end=end, network=network
    )


@router.get("/v1/mentions/{mention_id}", response_model=MentionOut)
async def get_mention(
    mention_id: str, session: DbSession, principal: CurrentPrincipal
) -> MentionOut:
    return _mention_out(await reviews.get_mention(session, principal.tenant, mention_id))


# --- sentiment --------------------------------------------------------------------------------


@router.get(
    "/v1/sentiment/summary",
    response_model=SentimentSummary,
    dependencies=[Depends(_only("from", "to", "channel"))],
)
async def sentiment_summary(
    session: DbSession,
    principal: CurrentPrincipal,
    start: Start = None,
    end: End = None,
    channel: Annotated[
        str | None, Query(max_length=32, description="a channel kind, review source or network")
    ] = None,
) -> dict[str, Any]:
    """Shares of negative, neutral and positive inbound messages, reviews and mentions; the
    last 30 days unless ``from`` and ``to`` say otherwise."""
    end_at = as_utc(end) if end is not None else now()
    start_at = as_utc(start) if start is not None else end_at - _DEFAULT_SPAN
    reviews.check_range(start_at, end_at)
    return await sentiment.sentiment_summary(
        session, principal.tenant, start=start_at, end=end_at, channel=channel
    )
