"""HTTP API of recommendations (thin: ``recommend`` does the work): a customer's
recommendations, a product's aliases, and recounting a tenant's baskets.

Every key of the tenant reads; setting aliases needs a supervisor, recounting an admin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from hilos.core.deps import AdminPrincipal, CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.schemas import Strict
from hilos.engagement import recommend

router = APIRouter(prefix="/v1", tags=["recommendations"])


class RecommendationOut(BaseModel):
    sku: str
    product_id: str
    name: str
    score: float
    # bought_together:<product_id>, mentioned, viewed, popular
    reasons: list[str]
    # Names of the products it is often bought with.
    bought_with: list[str]
    url: str | None = None


class RecommendationsOut(BaseModel):
    customer_id: str
    items: list[RecommendationOut]


class AliasesIn(Strict):
    aliases: list[str] = Field(max_length=recommend.MAX_ALIASES)


class AliasesOut(BaseModel):
    product_id: str
    aliases: list[str]


class RebuildOut(BaseModel):
    orders: int
    baskets: int


def recommendation_out(item: recommend.Recommendation) -> RecommendationOut:
    return RecommendationOut(
        sku=item.sku,
        product_id=item.product_id,
        name=item.name,
        score=item.score,
        reasons=item.reasons,
        bought_with=item.bought_with,
        url=item.url,
    )


@router.get("/customers/{customer_id}/recommendations", response_model=RecommendationsOut)
async def customer_recommendations(
    customer_id: str,
    session: DbSession,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=recommend.MAX_LIMIT)] = 10,
) -> RecommendationsOut:
    items = await recommend.recommend(session, principal.tenant, customer_id, limit=limit)
    return RecommendationsOut(
        customer_id=customer_id, items=[recommendation_out(item) for item in items]
    )


@router.get("/products/{product_id}/aliases", response_model=AliasesOut)
async def get_aliases(
    product_id: str, session: DbSession, principal: CurrentPrincipal
) -> AliasesOut:
    aliases = await recommend.get_aliases(session, principal.tenant, product_id)
    return AliasesOut(product_id=product_id, aliases=aliases)


@router.put("/products/{product_id}/aliases", response_model=AliasesOut)
async def set_aliases(
    product_id: str, body: AliasesIn, session: DbSession, principal: SupervisorPrincipal
) -> AliasesOut:
    aliases = await recommend.set_aliases(session, principal.tenant, product_id, body.aliases)
    return AliasesOut(product_id=product_id, aliases=aliases)


@router.post("/recommendations/rebuild", response_model=RebuildOut)
async def rebuild(session: DbSession, principal: AdminPrincipal) -> RebuildOut:
    return RebuildOut(**await recommend.rebuild(session, principal.tenant))
