"""The catalog and the locations: products with their variants (SKUs), warehouses and stores.

Owns creating and reading ``Product``, ``Variant`` and ``Location`` rows, and the lookups every
other part of commerce uses to turn the codes in a request body into rows: ``variant_by_sku``,
``location_by_code``. A SKU and a location code are unique per tenant; a second one is a 409
(``sku_exists``, ``location_exists``), and a code of another tenant is simply not found.

The GTIN check digit (GS1's mod-10 rule) is four lines here; python-stdnum does it too, but it
would be a dependency for one sum.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hilos.commerce.models import Location, Product, Variant
from hilos.core.clock import now
from hilos.core.errors import Conflict, Invalid, NotFound
from hilos.core.ids import new_id
from hilos.core.tenancy import TenantContext, get_owned, tenant_scope

MAX_PAGE = 500
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOUR = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")


# --- validation shared with the schemas -----------------------------------------------------


def check_gtin(value: str) -> str:
    """``value`` if it is a GTIN-8/12/13/14 with a correct GS1 check digit, else ValueError."""
    if not value.isdigit() or len(value) not in (8, 12, 13, 14):
        raise ValueError("a GTIN has 8, 12, 13 or 14 digits")
    digits = [int(d) for d in value]
    # Weights 3,1,3,1... from the digit next to the check digit, leftwards.
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    if (10 - total % 10) % 10 != digits[-1]:
        raise ValueError("the GTIN's check digit is wrong")
    return value


def check_opening_hours(value: dict[str, Any]) -> dict[str, Any]:
    """``{"mon": [["10:00", "21:00"]], ...}``: known days, ``HH:MM`` ranges that end later."""
    for day, ranges in value.items():
        if day not in _DAYS:
            raise ValueError(f"unknown day {day!r}; days are {', '.join(_DAYS)}")
        if not isinstance(ranges, list):
            raise ValueError(f"{day}: a list of [opens, closes] pairs")
        for pair in ranges:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(h, str) and _HOUR.match(h) for h in pair)
            ):
                raise ValueError(f'{day}: each range is ["HH:MM", "HH:MM"]')
            if pair[1] <= pair[0]:
                raise ValueError(f"{day}: {pair[0]}-{pair[1]} closes before it opens")
    return value


# --- products -------------------------------------------------------------------------------


async def create_product(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    name: str,
    description: str | None,
    images: Sequence[str],
    variants: Sequence[dict[str, Any]],
) -> tuple[Product, list[Variant]]:
    """A product and its variants; a SKU already used (here or in the request) is refused."""
    skus = [v["sku"] for v in variants]
    repeated = sorted({sku for sku in skus if skus.count(sku) > 1})
    if repeated:
        raise Invalid(f"SKU {repeated[0]} appears twice in the request", field="variants")
    taken = (
        await session.scalars(
            tenant_scope(select(Variant.sku).where(Variant.sku.in_(skus)), Variant, tenant)
        )
    ).all()
    if taken:
        raise Conflict(f"SKU {sorted(taken)[0]} already exists", code="sku_exists")
    moment = now()
    product = Product(
        id=new_id(),
        tenant_id=tenant.id,
        name=name,
        description=description,
        images=list(images),
        created_at=moment,
        updated_at=moment,
    )
    rows = [
        Variant(
            id=new_id(),
            tenant_id=tenant.id,
            product_id=product.id,
            sku=v["sku"],
            gtin=v.get("gtin"),
            name=v.get("name") or name,
            attributes=dict(v.get("attributes") or {}),
            created_at=moment,
        )
        for v in variants
    ]
    try:
        async with session.begin_nested():
            session.add(product)
            await session.flush()
            session.add_all(rows)
    except IntegrityError as error:  # a concurrent request took one of the SKUs
        raise Conflict("one of the SKUs already exists", code="sku_exists") from error
    return product, rows


async def get_product(
    session: AsyncSession, tenant: TenantContext, product_id: str
) -> tuple[Product, list[Variant]]:
    product = await get_owned(session, Product, product_id, tenant, what="product")
    return product, (await variants_of(session, tenant, [product.id]))[product.id]


async def list_products(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    sku: str | None = None,
    variant_ids: Any = None,
    after: str | None = None,
    limit: int = 100,
) -> list[tuple[Product, list[Variant]]]:
    """Products by id (creation order), ``limit`` after the id ``after``; ``sku`` finds the one
    product that has that SKU; ``variant_ids`` (a subquery) keeps the products with one of
    those variants."""
    statement = tenant_scope(select(Product), Product, tenant)
    if variant_ids is not None:
        statement = statement.where(
            Product.id.in_(
                tenant_scope(
                    select(Variant.product_id).where(Variant.id.in_(variant_ids)), Variant, tenant
                )
            )
        )
    if sku is not None:
        statement = statement.where(
            Product.id.in_(
                tenant_scope(select(Variant.product_id).where(Variant.sku == sku), Variant, tenant)
            )
        )
    if after is not None:
        statement = statement.where(Product.id > after)
    products = (
        await session.scalars(statement.order_by(Product.id).limit(min(limit, MAX_PAGE)))
    ).all()
    variants = await variants_of(session, tenant, [p.id for p in products])
    return [(p, variants[p.id]) for p in products]


async def variants_of(
    session: AsyncSession, tenant: TenantContext, product_ids: Sequence[str]
) -> dict[str, list[Variant]]:
    found: dict[str, list[Variant]] = {product_id: [] for product_id in product_ids}
    if not product_ids:
        return found
    statement = tenant_scope(
        select(Variant).where(Variant.product_id.in_(product_ids)), Variant, tenant
    ).order_by(Variant.id)
    for variant in (await session.scalars(statement)).all():
        found[variant.product_id].append(variant)
    return found


async def variant_by_sku(
    session: AsyncSession, tenant: TenantContext, sku: str, *, field: str = "sku"
) -> Variant:
    """The tenant's variant with ``sku``; an unknown SKU (or another tenant's) is a 404 that
    names ``field``."""
    statement = tenant_scope(select(Variant).where(Variant.sku == sku), Variant, tenant)
    variant = (await session.scalars(statement)).one_or_none()
    if variant is None:
        raise NotFound(f"unknown SKU {sku}", code="unknown_sku", details={"field": field})
    return variant


async def names_by_sku(
    session: AsyncSession, tenant: TenantContext, skus: Sequence[str]
) -> dict[str, tuple[str, str]]:
    """``{sku: (product name, variant name)}`` for the tenant's ``skus``, in one query; SKUs
    it does not have are left out."""
    if not skus:
        return {}
    statement = (
        select(Variant.sku, Product.name, Variant.name)
        .join(Product, Product.id == Variant.product_id)
        .where(Variant.tenant_id == tenant.id, Variant.sku.in_(sorted(set(skus))))
    )
    rows = (await session.execute(statement)).all()
    return {sku: (product, variant) for sku, product, variant in rows}


# --- locations ------------------------------------------------------------------------------


async def create_location(session: AsyncSession, tenant: TenantContext, **fields: Any) -> Location:
    location = Location(id=new_id(), tenant_id=tenant.id, created_at=now(), **fields)
    try:
        async with session.begin_nested():
            session.add(location)
    except IntegrityError as error:
        raise Conflict(
            f"a location with code {fields['code']} already exists", code="location_exists"
        ) from error
    return location


async def get_location(session: AsyncSession, tenant: TenantContext, location_id: str) -> Location:
    return await get_owned(session, Location, location_id, tenant, what="location")


async def list_locations(
    session: AsyncSession,
    tenant: TenantContext,
    *,
    kind: str | None = None,
    code: str | None = None,
    after: str | None = None,
    limit: int = 100,
) -> Sequence[Location]:
    statement = tenant_scope(select(Location), Location, tenant)
    if kind is not None:
        statement = statement.where(Location.kind == kind)
    if code is not None:
        statement = statement.where(Location.code == code)
    if after is not None:
        statement = statement.where(Location.id > after)
    return (
        await session.scalars(statement.order_by(Location.id).limit(min(limit, MAX_PAGE)))
    ).all()


async def location_by_code(
    session: AsyncSession, tenant: TenantContext, code: str, *, field: str = "location"
) -> Location:
    """The tenant's location with ``code``; an unknown code (or another tenant's) is a 404
    that names ``field``."""
    statement = tenant_scope(select(Location).where(Location.code == code), Location, tenant)
    location = (await session.scalars(statement)).one_or_none()
    if location is None:
        raise NotFound(
            f"unknown location {code}", code="unknown_location", details={"field": field}
        )
    return location
