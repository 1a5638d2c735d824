"""HTTP API of the customers domain: identify, the 360° view, search, merges, consents."""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce import carts, loyalty, orders
from hilos.conversations import service as conversations
from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.errors import Conflict, Invalid
from hilos.core.tenancy import TenantContext
from hilos.customers import service
from hilos.customers.models import Customer, Identity
from hilos.customers.schemas import (
    BlockedValueIn,
    BlockedValueOut,
    CartBrief,
    ConsentIn,
    ConsentOut,
    ConversationBrief,
    Customer360,
    CustomerOut,
    CustomerPage,
    CustomerSummary,
    CustomerUpdate,
    IdentifyRequest,
    IdentifyResponse,
    IdentityConflict,
    IdentityIn,
    IdentityOut,
    JourneyPlace,
    LoyaltyBrief,
    MergeOut,
    OrderBrief,
    RecommendationBrief,
    TimelineItem,
    UnmergeRequest,
)
from hilos.engagement import journeys, recommend
from hilos.privacy import audit

router = APIRouter(prefix="/v1", tags=["customers"])


def identify_response(result: service.IdentifyResult) -> IdentifyResponse:
    return IdentifyResponse(
        customer_id=result.customer_id,
        created=result.created,
        merged_customer_ids=result.merged_ids,
        linked=[IdentityIn(kind=kind, value=value) for kind, value in result.linked],
        conflicts=[IdentityConflict(**c) for c in result.conflicts],
        ignored=[IdentityConflict(**c) for c in result.ignored],
    )


@router.post("/customers/identify", response_model=IdentifyResponse)
async def identify(
    body: IdentifyRequest, session: DbSession, principal: CurrentPrincipal
) -> IdentifyResponse:
    result = await service.identify(
        session,
        principal.tenant,
        identities=[(i.kind, i.value) for i in body.identities],
        name=body.name,
        language=body.language,
        traits=body.traits,
    )
    return identify_response(result)


async def _summaries(session: AsyncSession, customers: list[Customer]) -> list[CustomerSummary]:
    by_customer: dict[str, list[IdentityOut]] = defaultdict(list)
    if customers:
        rows = await session.execute(
            select(Identity)
            .where(Identity.customer_id.in_([c.id for c in customers]))
            .order_by(Identity.id)
        )
        for identity in rows.scalars():
            by_customer[identity.customer_id].append(IdentityOut.model_validate(identity))
    return [
        CustomerSummary(**CustomerOut.model_validate(c).model_dump(), identities=by_customer[c.id])
        for c in customers
    ]


@router.get("/customers", response_model=CustomerPage)
async def list_customers(
    session: DbSession,
    principal: CurrentPrincipal,
    identity: Annotated[
        str | None, Query(description="kind:value, e.g. email:ana@example.es")
    ] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> CustomerPage:
    if identity is not None:
        kind, sep, value = identity.partition(":")
        if not sep or not value:
            raise Invalid(
                "identity must be kind:value, e.g. email:ana@example.es", field="identity"
            )
        found = await service.find_by_identity(session, principal.tenant, kind=kind, value=value)
        return CustomerPage(
            items=await _summaries(session, [found] if found else []), next_cursor=None
        )
    customers = list(
        await service.search_customers(
            session, principal.tenant, q=q, before=cursor, limit=limit + 1
        )
    )
    next_cursor = customers[limit - 1].id if len(customers) > limit else None
    return CustomerPage(items=await _summaries(session, customers[:limit]), next_cursor=next_cursor)


async def customer_360(
    session: AsyncSession, tenant: TenantContext, customer: Customer
) -> Customer360:
    identities = await service.identities_of(session, tenant, customer.id)
    history = await service.consent_history(session, tenant, customer.id)
    active = await conversations.active_conversations_of(session, tenant, customer.id)
    kinds = await conversations.channel_kinds_for(session, tenant, active)
    events = await service.recent_timeline_events(session, tenant, customer.id, limit=50)
    messages = await conversations.recent_messages_of_customer(
        session, tenant, customer.id, limit=50
    )
    cart = await carts.active_cart(session, tenant, customer.id)
    points = await loyalty.summary(session, tenant, customer.id)
    recent_orders = await orders.list_orders(session, tenant, customer_id=customer.id, limit=5)
    recommended = await recommend.recommend_for(
        session, tenant, customer, limit=5, events=events, messages=[m for m, _ in messages]
    )
    places = await journeys.places_of_customer(session, tenant, customer.id)
    timeline = [
        TimelineItem(
            id=e.id,
            type=e.type,
            name=e.name,
            occurred_at=e.occurred_at,
            properties=e.properties,
        )
        for e in events
    ] + [
        TimelineItem(
            id=m.id,
            # A call or a store visit is an entry of the conversation too, shown as what it is.
            type="message" if m.kind == "message" else m.kind,
            name=m.direction,
            occurred_at=m.sent_at,
            channel_kind=kind,
            conversation_id=m.conversation_id,
            direction=m.direction,
            text=m.text,
            properties=m.data or {},
        )
        for m, kind in messages
    ]
    timeline.sort(key=lambda item: (item.occurred_at, item.id), reverse=True)
    return Customer360(
        **CustomerOut.model_validate(customer).model_dump(),
        identities=[IdentityOut.model_validate(i) for i in identities],
        consents=[ConsentOut.model_validate(c) for c in service.current_consents(history)],
        open_conversations=[
            ConversationBrief(
                id=c.id,
                status=c.status,
                channels=[kinds.get(channel_id, "unknown") for channel_id in c.channel_ids],
                assignee_id=c.assignee_id,
                last_message_at=c.last_message_at,
            )
            for c in active
        ],
        timeline=timeline[:50],
        active_cart=CartBrief.model_validate(cart) if cart else None,
        loyalty=LoyaltyBrief(**points) if points else None,
        recent_orders=[
            OrderBrief(
                id=o.id,
                number=orders.order_number(o.id),
                status=o.status,
                channel=o.channel,
                total=o.total,
                currency=o.currency,
                created_at=o.created_at,
            )
            for o in recent_orders
        ],
        recommendations=[
            RecommendationBrief(
                sku=r.sku, name=r.name, score=r.score, reasons=r.reasons, bought_with=r.bought_with
            )
            for r in recommended
        ],
        journeys=[
            JourneyPlace(
                run_id=run.id,
                journey_id=run.journey_id,
                journey=name,
                status=run.status,
                step_id=run.step_id,
                next_at=run.next_at,
                exit_reason=run.exit_reason,
                entered_at=run.entered_at,
            )
            for run, name in places
        ],
    )


def _redirect_to(customer: Customer, path_suffix: str = "") -> JSONResponse:
    return JSONResponse(
        status_code=307,
        headers={"Location": f"/v1/customers/{customer.merged_into_id}{path_suffix}"},
        content={
            "error": {
                "code": "merged",
                "message": f"customer {customer.id} was merged into {customer.merged_into_id}",
            },
            "merged_into": customer.merged_into_id,
        },
    )


@router.get(
    "/customers/{customer_id}",
    response_model=Customer360,
    responses={307: {"description": "The customer was merged; Location names the survivor."}},
)
async def get_customer(
    customer_id: str, session: DbSession, principal: CurrentPrincipal
) -> Customer360 | JSONResponse:
    customer = await service.get_customer(session, principal.tenant, customer_id)
    if customer.merged_into_id is not None:
        return _redirect_to(customer)
    return await customer_360(session, principal.tenant, customer)


@router.patch("/customers/{customer_id}", response_model=CustomerOut)
async def update_customer(
    customer_id: str, body: CustomerUpdate, session: DbSession, principal: CurrentPrincipal
) -> Customer:
    customer = await service.live_customer(session, principal.tenant, customer_id)
    erasure = await audit.latest(
        session,
        principal.tenant.id,
        action="customer.erased",
        subject_type="customer",
        subject_ids=[customer.id],
    )
    if erasure is not None:
        # An erased profile stays only so the figures keep their counts: writing a name or traits
        # onto it would bring personal data back under an id the erasure promised was empty.
        raise Conflict(
            "the customer's data was erased; identify the person again to start a new profile",
            code="customer_erased",
        )
    service.apply_profile(customer, name=body.name, language=body.language, traits=body.traits)
    await session.flush()
    return customer


@router.get("/customers/{customer_id}/merges", response_model=list[MergeOut])
async def list_merges(customer_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    await service.get_customer(session, principal.tenant, customer_id)
    return await service.merges_of(session, principal.tenant, customer_id)


@router.post("/customers/{customer_id}/unmerge", response_model=MergeOut)
async def unmerge(
    customer_id: str,
    session: DbSession,
    principal: SupervisorPrincipal,
    body: UnmergeRequest | None = None,
) -> object:
    record = await service.unmerge(
        session,
        principal.tenant,
        customer_id=customer_id,
        merge_id=body.merge_id if body else None,
    )
    await audit.record(
        session,
        principal,
        "customer.unmerged",
        subject_type="customer",
        subject_id=record.survivor_id,
        details={"merge_id": record.id, "merged_id": record.merged_id},
    )
    return record


@router.post("/customers/{customer_id}/consents", response_model=ConsentOut, status_code=201)
async def record_consent(
    customer_id: str, body: ConsentIn, session: DbSession, principal: CurrentPrincipal
) -> object:
    return await service.record_consent(
        session,
        principal.tenant,
        customer_id=customer_id,
        purpose=body.purpose,
        channel_kind=body.channel_kind,
        granted=body.granted,
        source=body.source,
        recorded_at=body.recorded_at,
    )


@router.get("/customers/{customer_id}/consents", response_model=list[ConsentOut])
async def consent_history(
    customer_id: str, session: DbSession, principal: CurrentPrincipal
) -> object:
    customer = await service.live_customer(session, principal.tenant, customer_id)
    return await service.consent_history(session, principal.tenant, customer.id)


@router.post("/blocked-values", response_model=BlockedValueOut, status_code=201)
async def block_value(
    body: BlockedValueIn, session: DbSession, principal: AdminPrincipal
) -> object:
    blocked = await service.block_value(
        session, principal.tenant, kind=body.kind, value=body.value, reason=body.reason
    )
    await audit.record(
        session,
        principal,
        "blocked_value.created",
        subject_type="blocked_value",
        subject_id=blocked.id,
        details={"kind": blocked.kind},
    )
    return blocked


@router.get("/blocked-values", response_model=list[BlockedValueOut])
async def list_blocked(session: DbSession, principal: AdminPrincipal) -> object:
    return await service.list_blocked(session, principal.tenant)


@router.delete("/blocked-values/{blocked_id}", status_code=204)
async def unblock(blocked_id: str, session: DbSession, principal: AdminPrincipal) -> None:
    await service.unblock_value(session, principal.tenant, blocked_id)
    await audit.record(
        session,
        principal,
        "blocked_value.deleted",
        subject_type="blocked_value",
        subject_id=blocked_id,
    )
