"""HTTP API of segments (thin: ``hilos.engagement.segments`` does the work).

Every key of the tenant reads segments, their live counts and members; saving, changing and
deleting them needs a supervisor. A rule is checked when saved and when previewed, and a bad
one answers 422 with the path of what is wrong in ``field`` (``rule.all.1.orders.count_gte``).
The request and response models live here: they are this router's alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from hilos.core.clock import now
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.engagement import segments

router = APIRouter(prefix="/v1", tags=["segments"])

Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=1000)]
Rule = Annotated[
    dict[str, Any],
    Field(
        description='a tree of conditions: {"all": [...]}, {"any": [...]}, {"not": {...}} over '
        "trait, field, event, orders, channel_used, loyalty_tier, consent and has_identity",
        examples=[
            {
                "all": [
                    {
                        "event": {
                            "type": "track",
                            "name": "Product Viewed",
                            "where": {"properties.category": "zapatillas"},
                        },
                        "within_days": 7,
                    },
                    {"consent": {"purpose": "marketing", "channel_kind": "whatsapp"}},
                ]
            }
        ],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SegmentIn(Strict):
    name: Name
    description: Description | None = None
    rule: Rule


class SegmentUpdate(Strict):
    name: Name | None = None
    description: Description | None = None
    rule: Rule | None = None


class RuleIn(Strict):
    rule: Rule


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str | None
    rule: dict[str, Any]
    member_count: int = Field(description="members at the last refresh (see refreshed_at)")
    refreshed_at: datetime | None
    created_at: datetime
    updated_at: datetime


class CountOut(BaseModel):
    count: int
    computed_at: datetime


class MemberOut(BaseModel):
    customer_id: str
    name: str | None


class MembersPage(BaseModel):
    items: list[MemberOut]
    next_after: str | None = Field(description="pass as after for the next page; null at the end")


@router.post("/segments", response_model=SegmentOut, status_code=201)
async def create_segment(
    body: SegmentIn, response: Response, session: DbSession, principal: SupervisorPrincipal
) -> object:
    """Save a segment. Sending the same segment again answers 200 with the one saved."""
    segment, created = await segments.create_segment(
        session, principal.tenant, name=body.name, rule=body.rule, description=body.description
    )
    if not created:
        response.status_code = 200
    return segment


@router.get("/segments", response_model=list[SegmentOut])
async def list_segments(session: DbSession, principal: CurrentPrincipal) -> object:
    """The tenant's segments by name."""
    return await segments.list_segments(session, principal.tenant)


@router.post("/segments/preview", response_model=CountOut)
async def preview(body: RuleIn, session: DbSession, principal: CurrentPrincipal) -> CountOut:
    """How many customers a rule matches now, without saving it."""
    count = await segments.count_rule(session, principal.tenant, body.rule)
    return CountOut(count=count, computed_at=now())


@router.get("/segments/{segment_id}", response_model=SegmentOut)
async def get_segment(segment_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    return await segments.get_segment(session, principal.tenant, segment_id)


@router.patch("/segments/{segment_id}", response_model=SegmentOut)
async def update_segment(
    segment_id: str, body: SegmentUpdate, session: DbSession, principal: SupervisorPrincipal
) -> object:
    return await segments.update_segment(
        session, principal.tenant, segment_id, changes=body.model_dump(exclude_unset=True)
    )


@router.delete("/segments/{segment_id}", status_code=204)
async def delete_segment(
    segment_id: str, session: DbSession, principal: SupervisorPrincipal
) -> Response:
    await segments.delete_segment(session, principal.tenant, segment_id)
    return Response(status_code=204)


@router.get("/segments/{segment_id}/count", response_model=CountOut)
async def count_members(
    segment_id: str, session: DbSession, principal: CurrentPrincipal
) -> CountOut:
    """The live count: the rule evaluated now."""
    count = await segments.count_members(session, principal.tenant, segment_id)
    return CountOut(count=count, computed_at=now())


@router.get("/segments/{segment_id}/members", response_model=MembersPage)
async def members(
    segment_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    after: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=segments.MAX_PAGE)] = 100,
) -> MembersPage:
    """Live members in customer-id order, a page at a time."""
    page = await segments.members_page(
        session, principal.tenant, segment_id, after=after, limit=limit
    )
    return MembersPage(
        items=[MemberOut(customer_id=customer_id, name=name) for customer_id, name in page],
        next_after=page[-1][0] if len(page) == limit else None,
    )
