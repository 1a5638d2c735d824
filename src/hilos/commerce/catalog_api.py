"""HTTP API of the catalog, locations, prices and the price-parity report (thin: ``catalog``
and ``pricing`` do the work).

Every key of the tenant reads; creating products and locations, setting prices and the parity
policy needs a supervisor.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import AwareDatetime

from hilos.commerce import catalog, pricing
from hilos.commerce.models import Product, Variant
from hilos.commerce.schemas import (
    LocationIn,
    LocationOut,
    ParityItem,
    ParityPolicyIn,
    ParityPolicyOut,
    ParityReport,
    PriceIn,
    PriceOut,
    ProductIn,
    ProductOut,
    Sku,
    VariantOut,
)
from hilos.core.clock import now
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal
from hilos.core.tenancy import TenantContext

router = APIRouter(prefix="/v1", tags=["catalog"])

Limit = Annotated[int, Query(ge=1, le=catalog.MAX_PAGE)]
After = Annotated[str | None, Query(max_length=32, description="the last id of the previous page")]


async def _products_out(
    session: DbSession, tenant: TenantContext, found: list[tuple[Product, list[Variant]]]
) -> list[ProductOut]:
    """Products with, for each variant, the channels it is listed on now (one query)."""
    listed = await pricing.listed_channels(
        session, tenant, [v.id for _, variants in found for v in variants], at=now()
    )
    return [
        ProductOut(
            id=product.id,
            name=product.name,
            description=product.description,
            images=list(product.images or []),
            variants=[
                VariantOut.model_validate(v).model_copy(update={"channels": listed.get(v.id, [])})
                for v in variants
            ],
            created_at=product.created_at,
            updated_at=product.updated_at,
        )
        for product, variants in found
    ]


# --- products -------------------------------------------------------------------------------


@router.post("/products", response_model=ProductOut, status_code=201)
async def create_product(
    body: ProductIn, session: DbSession, principal: SupervisorPrincipal
) -> ProductOut:
    """A product with one variant (``sku``) or several (``variants``); a SKU already used is a
    409 ``sku_exists``."""
    product, variants = await catalog.create_product(
        session,
        principal.tenant,
        name=body.name,
        description=body.description,
        images=[str(url) for url in body.images],
        variants=[v.model_dump() for v in body.variant_list()],
    )
    return (await _products_out(session, principal.tenant, [(product, variants)]))[0]


@router.get("/products", response_model=list[ProductOut])
async def list_products(
    session: DbSession,
    principal: CurrentPrincipal,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    channel: Annotated[
        str | None, Query(max_length=64, description="only products listed (priced) there now")
    ] = None,
    after: After = None,
    limit: Limit = 100,
) -> list[ProductOut]:
    found = await catalog.list_products(
        session,
        principal.tenant,
        sku=sku,
        variant_ids=pricing.listed_on(principal.tenant, channel, now()) if channel else None,
        after=after,
        limit=limit,
    )
    return await _products_out(session, principal.tenant, found)


@router.get("/products/{product_id}", response_model=ProductOut)
async def get_product(
    product_id: str, session: DbSession, principal: CurrentPrincipal
) -> ProductOut:
    found = await catalog.get_product(session, principal.tenant, product_id)
    return (await _products_out(session, principal.tenant, [found]))[0]


# --- locations ------------------------------------------------------------------------------


@router.post("/locations", response_model=LocationOut, status_code=201)
async def create_location(
    body: LocationIn, session: DbSession, principal: SupervisorPrincipal
) -> object:
    """A warehouse or a store; a code already used is a 409 ``location_exists``. A warehouse
    with ``pickup`` or ``ship_from_store`` is refused (422): those are store services."""
    return await catalog.create_location(session, principal.tenant, **body.model_dump())


@router.get("/locations", response_model=list[LocationOut])
async def list_locations(
    session: DbSession,
    principal: CurrentPrincipal,
    kind: Literal["warehouse", "store"] | None = None,
    code: Annotated[str | None, Query(max_length=64)] = None,
    after: After = None,
    limit: Limit = 100,
) -> object:
    return await catalog.list_locations(
        session, principal.tenant, kind=kind, code=code, after=after, limit=limit
    )


@router.get("/locations/{location_id}", response_model=LocationOut)
async def get_location(location_id: str, session: DbSession, principal: CurrentPrincipal) -> object:
    return await catalog.get_location(session, principal.tenant, location_id)


# --- prices ---------------------------------------------------------------------------------


@router.put("/prices", response_model=PriceOut)
async def set_price(body: PriceIn, session: DbSession, principal: SupervisorPrincipal) -> object:
    """Insert or replace the price of a SKU in a channel from ``valid_from``. A channel's prices
    share one currency (422 ``currency_mismatch`` otherwise); an unknown SKU is a 404."""
    return await pricing.set_price(session, principal.tenant, **body.model_dump())


@router.get("/prices", response_model=list[PriceOut])
async def list_prices(
    session: DbSession,
    principal: CurrentPrincipal,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
) -> object:
    """Every price row (all validity windows) of a SKU and/or a channel."""
    return await pricing.list_prices(session, principal.tenant, sku=sku, channel=channel)


@router.get("/prices/effective", response_model=list[PriceOut])
async def effective_prices(
    session: DbSession,
    principal: CurrentPrincipal,
    sku: Annotated[Sku, Query()],
    at: AwareDatetime | None = None,
) -> object:
    """The price of ``sku`` in each channel at ``at`` (now by default)."""
    found = await pricing.effective_prices(session, principal.tenant, at=at or now(), sku=sku)
    return sorted(found.get(sku, {}).values(), key=lambda p: p.channel)


@router.delete("/prices/{price_id}", status_code=204)
async def delete_price(
    price_id: str, session: DbSession, principal: SupervisorPrincipal
) -> Response:
    await pricing.delete_price(session, principal.tenant, price_id)
    return Response(status_code=204)


# --- parity ---------------------------------------------------------------------------------


@router.get("/price-parity", response_model=ParityReport)
async def price_parity(
    session: DbSession,
    principal: CurrentPrincipal,
    at: AwareDatetime | None = None,
    include_within_policy: bool = False,
) -> ParityReport:
    """SKUs whose effective prices differ between channels beyond the tenant's policy, each
    with every channel's price and gap from the lowest. ``include_within_policy`` also lists
    SKUs whose prices differ but stay within it."""
    moment, policy, items = await pricing.parity_report(
        session, principal.tenant, at=at, include_within_policy=include_within_policy
    )
    return ParityReport(
        at=moment,
        policy=ParityPolicyOut(
            max_gap_percent=policy.max_gap_percent, allowances=policy.allowances
        ),
        items=[ParityItem.model_validate(item, from_attributes=True) for item in items],
    )


@router.get("/price-parity/policy", response_model=ParityPolicyOut)
async def get_parity_policy(session: DbSession, principal: CurrentPrincipal) -> object:
    return await pricing.get_policy(session, principal.tenant)


@router.put("/price-parity/policy", response_model=ParityPolicyOut)
async def set_parity_policy(
    body: ParityPolicyIn, session: DbSession, principal: SupervisorPrincipal
) -> object:
    """Replace the policy: ``max_gap_percent`` for every channel, ``allowances`` per channel
    code (``{"marketplace": 5}``: marketplace may be up to 5 % above the lowest price)."""
    return await pricing.set_policy(
        session,
        principal.tenant,
        max_gap_percent=body.max_gap_percent,
        allowances=dict(body.allowances),
    )
