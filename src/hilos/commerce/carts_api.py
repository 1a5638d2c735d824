"""HTTP API of shared carts: set a line from any channel, read a cart by id or by customer,
close it, and the tenant's abandonment threshold. Thin: calls ``hilos.commerce.carts``.
"""

from __future__ import annotations

from fastapi import APIRouter

from hilos.commerce import carts
from hilos.commerce.cart_schemas import CartLineIn, CartOut, CartSettingsIn, CartSettingsOut
from hilos.core.deps import CurrentPrincipal, DbSession, SupervisorPrincipal

router = APIRouter(tags=["carts"])


@router.put("/v1/carts/lines", response_model=CartOut)
async def set_line(body: CartLineIn, session: DbSession, principal: CurrentPrincipal) -> CartOut:
    """Set the quantity of a SKU in the customer's open cart, creating the cart with its first
    line; 0 removes the line. The line is priced by ``channel``'s price list."""
    tenant = principal.tenant
    customer_id = await carts.resolve_customer(
        session,
        tenant,
        customer_id=body.customer_id,
        identities=[(i.kind, i.value) for i in body.customer.identities] if body.customer else None,
        name=body.customer.name if body.customer else None,
    )
    view = await carts.set_line(
        session,
        tenant,
        customer_id=customer_id,
        channel=body.channel,
        sku=body.sku,
        quantity=body.quantity,
        expected_version=body.expected_version,
    )
    return CartOut.model_validate(view)


@router.get("/v1/carts/settings", response_model=CartSettingsOut)
async def get_settings(session: DbSession, principal: CurrentPrincipal) -> CartSettingsOut:
    return CartSettingsOut.model_validate(await carts.get_settings(session, principal.tenant))


@router.put("/v1/carts/settings", response_model=CartSettingsOut)
async def set_settings(
    body: CartSettingsIn, session: DbSession, principal: SupervisorPrincipal
) -> CartSettingsOut:
    view = await carts.set_settings(
        session, principal.tenant, abandon_after_minutes=body.abandon_after_minutes
    )
    return CartSettingsOut.model_validate(view)


@router.get("/v1/carts/{cart_id}", response_model=CartOut)
async def get_cart(cart_id: str, session: DbSession, principal: CurrentPrincipal) -> CartOut:
    return CartOut.model_validate(await carts.get_cart(session, principal.tenant, cart_id))


@router.delete("/v1/carts/{cart_id}", response_model=CartOut)
async def close_cart(cart_id: str, session: DbSession, principal: CurrentPrincipal) -> CartOut:
    """Close the cart: the customer's next line starts a new one. Answers the closed cart."""
    return CartOut.model_validate(await carts.close_cart(session, principal.tenant, cart_id))


@router.get("/v1/customers/{customer_id}/cart", response_model=CartOut)
async def customer_cart(
    customer_id: str, session: DbSession, principal: CurrentPrincipal
) -> CartOut:
    """The customer's open cart (active or abandoned); ``404 no_cart`` when there is none."""
    return CartOut.model_validate(await carts.customer_cart(session, principal.tenant, customer_id))
